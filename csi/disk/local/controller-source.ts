import { randomFillSync } from "node:crypto";
import { mkdir, open, rename, stat, statfs, truncate, unlink } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { Runner } from "../../../lib/exec.js";
import type { Logger } from "../../../lib/log.js";
import { failpoint } from "../../failpoints.js";
import { mapperPath } from "../../luks/luks-device.js";
import { deviceNumber, readMounts } from "../../node/mounts.js";
import { copySparse } from "../../tools/cp.js";
import { freeze, unfreeze } from "../../tools/fsfreeze.js";
import * as losetup from "../../tools/losetup.js";
import type { ControllerDiskSource, DiskRef } from "../disk-source.js";
import { volumeImagePath } from "./layout.js";

export interface LocalControllerSourceOptions {
  readonly dir: string;
  readonly run: Runner;
  readonly log: Logger;
}

/**
 * Everything before the data segment: the two LUKS2 header copies and the keyslot area, where
 * the only copies of the (wrapped) volume key live. Overwriting it makes the ciphertext
 * unreadable with any key, which is what deleting an encrypted volume must mean.
 */
const ERASE_BYTES = 16 * 1024 * 1024;

/** The controller half of the local source: sparse files in one directory. */
export function createLocalControllerSource(options: LocalControllerSourceOptions): ControllerDiskSource {
  const { dir, run, log } = options;
  const pathOf = (disk: DiskRef): string =>
    disk.kind === "volume" ? volumeImagePath(dir, disk.id) : join(dir, "snapshots", `${disk.id}.img`);

  /** Writes a whole new file under a temporary name, then renames it into place. */
  async function produce(target: string, write: (tmp: string) => Promise<void>): Promise<void> {
    await mkdir(dirname(target), { recursive: true });
    const tmp = `${target}.partial`;
    await unlink(tmp).catch(() => undefined);
    await write(tmp);
    await fsyncPath(tmp);
    await rename(tmp, target);
    await fsyncPath(dirname(target));
  }

  return {
    kind: "local",

    async createEmpty(volumeId, diskBytes) {
      await produce(volumeImagePath(dir, volumeId), async (tmp) => {
        await (await open(tmp, "wx", 0o600)).close();
        await truncate(tmp, diskBytes);
      });
    },

    async copy(from, to, diskBytes, opts) {
      const source = pathOf(from);
      await produce(pathOf(to), async (tmp) => {
        const copy = () => run(copySparse(source, tmp), { signal: opts?.signal });
        if (from.kind === "volume") await whileFrozen(from.id, copy);
        else await copy();
        if ((await stat(tmp)).size < diskBytes) await truncate(tmp, diskBytes);
      });
    },

    async destroy(disk) {
      const path = pathOf(disk);
      const handle = await open(path, "r+").catch((err: NodeJS.ErrnoException) => {
        if (err.code === "ENOENT") return undefined;
        throw err;
      });
      if (handle) {
        try {
          const length = Math.min(ERASE_BYTES, (await handle.stat()).size);
          const noise = Buffer.alloc(length);
          randomFillSync(noise);
          await handle.write(noise, 0, length, 0);
          await handle.datasync();
        } finally {
          await handle.close();
        }
        log.info({ disk: disk.id, kind: disk.kind, bytes: ERASE_BYTES }, "crypto-erased");
        failpoint("delete:after-erase");
      }
      await unlink(path).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== "ENOENT") throw err;
      });
      await unlink(`${path}.partial`).catch(() => undefined);
    },

    async grow(volumeId, diskBytes) {
      const path = volumeImagePath(dir, volumeId);
      if ((await stat(path)).size < diskBytes) await truncate(path, diskBytes);
    },

    async isAttached(volumeId) {
      const result = await run(losetup.findByFile(volumeImagePath(dir, volumeId)));
      return losetup.parseDeviceList(result.stdout).length > 0;
    },

    async freeBytes() {
      await mkdir(dir, { recursive: true });
      const fs = await statfs(dir);
      return fs.bavail * fs.bsize;
    },

    localPath: pathOf,
  };

  /**
   * Runs `fn` with the volume's filesystem frozen if it is mounted here (flushed, writes held),
   * so that a snapshot or clone of a volume in use holds a consistent filesystem. A block
   * volume in use is copied as it is: crash-consistent, as a power cut would leave it.
   */
  async function whileFrozen<T>(volumeId: string, fn: () => Promise<T>): Promise<T> {
    const device = await deviceNumber(mapperPath(volumeId)).catch(() => undefined);
    const mount = device === undefined ? undefined : (await readMounts()).find((m) => m.device === device);
    if (!mount) return fn();
    await run(freeze(mount.mountPoint));
    try {
      return await fn();
    } finally {
      await run(unfreeze(mount.mountPoint));
    }
  }
}

async function fsyncPath(path: string): Promise<void> {
  const handle = await open(path, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
