import { randomFillSync } from "node:crypto";
import { open, readdir, rename, stat, statfs, truncate, unlink } from "node:fs/promises";
import { dirname, join } from "node:path";
import { replaceFileAtomic, syncPath, TEMPORARY_PREFIX } from "../../../lib/atomic-file.js";
import type { Runner } from "../../../lib/exec.js";
import type { Logger } from "../../../lib/log.js";
import { failpoint } from "../../failpoints.js";
import { mapperPath } from "../../luks/luks-device.js";
import { deviceNumber, readMounts } from "../../node/mounts.js";
import * as losetup from "../../tools/losetup.js";
import type { ControllerDiskSource, DiskInventory, DiskRef } from "../disk-source.js";
import { FreezeLedger } from "./freeze-ledger.js";
import { volumeImagePath } from "./layout.js";
import { resumableCopy } from "./resumable-copy.js";

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

const IMAGE = ".img";
const PARTIAL = ".partial";
const PROGRESS = ".progress";

/**
 * The controller half of the local source: sparse files in one directory (`<id>.img`, and
 * `snapshots/<id>.img`). A copy in progress is `<target>.partial` with its progress in
 * `<target>.progress`; filesystems frozen for a copy are listed in `frozen/`.
 */
export function createLocalControllerSource(options: LocalControllerSourceOptions): ControllerDiskSource {
  const { dir, run, log } = options;
  const snapshotsDir = join(dir, "snapshots");
  const pathOf = (disk: DiskRef): string =>
    disk.kind === "volume" ? volumeImagePath(dir, disk.id) : join(snapshotsDir, `${disk.id}${IMAGE}`);
  const ledger = new FreezeLedger(join(dir, "frozen"), run, log.child({ scope: "freeze" }));

  /** The disk files (and partial copies) in `directory`, as refs of `kind`. */
  async function listDisks(directory: string, kind: DiskRef["kind"]): Promise<{ disks: DiskRef[]; partials: DiskRef[] }> {
    const names = await readdir(directory).catch(() => [] as string[]);
    const disks = names.filter((n) => n.endsWith(IMAGE)).map((n) => ({ kind, id: n.slice(0, -IMAGE.length) }));
    const partials = names.filter((n) => n.endsWith(`${IMAGE}${PARTIAL}`)).map((n) => ({ kind, id: n.slice(0, -`${IMAGE}${PARTIAL}`.length) }));
    return { disks, partials };
  }

  return {
    kind: "local",

    async createEmpty(volumeId, diskBytes) {
      await replaceFileAtomic(volumeImagePath(dir, volumeId), async (tmp) => {
        await (await open(tmp, "wx", 0o600)).close();
        await truncate(tmp, diskBytes);
      });
    },

    async copy(from, to, diskBytes, opts) {
      const target = pathOf(to);
      if (await exists(target)) {
        // Finished by an earlier attempt that was cut off before it could say so.
        await growTo(target, diskBytes);
        return;
      }
      // Not replaceFileAtomic: its temporary file has a random name and goes when an attempt
      // fails, and a copy's partial file must outlive the attempt to be resumed.
      const partial = `${target}${PARTIAL}`;
      const copy = () =>
        resumableCopy({ source: pathOf(from), partial, progressFile: `${target}${PROGRESS}`, run, log, onProgress: opts?.onProgress, scope: from.id });
      if (from.kind === "volume") await whileFrozen(from.id, copy);
      else await copy();
      await growTo(partial, diskBytes);
      await syncPath(partial);
      await rename(partial, target);
      await syncPath(dirname(target));
      await unlink(`${target}${PROGRESS}`).catch(() => undefined);
    },

    async destroy(disk) {
      const path = pathOf(disk);
      // A partial copy holds the source's header too: it is erased like a finished disk.
      for (const file of [path, `${path}${PARTIAL}`]) {
        if (await eraseHeader(file)) {
          log.info({ disk: disk.id, kind: disk.kind, file, bytes: ERASE_BYTES }, "crypto-erased");
          failpoint("delete:after-erase", disk.id);
        }
        await unlink(file).catch((err: NodeJS.ErrnoException) => {
          if (err.code !== "ENOENT") throw err;
        });
      }
      await unlink(`${path}${PROGRESS}`).catch(() => undefined);
      await syncPath(dirname(path)).catch(() => undefined);
    },

    async grow(volumeId, diskBytes) {
      await growTo(volumeImagePath(dir, volumeId), diskBytes);
    },

    async isAttached(volumeId) {
      const result = await run(losetup.findByFile(volumeImagePath(dir, volumeId)));
      return losetup.parseDeviceList(result.stdout).length > 0;
    },

    async poolBytes() {
      const fs = await statfs(dir);
      let used = 0;
      for (const directory of [dir, snapshotsDir]) {
        for (const name of await readdir(directory).catch(() => [] as string[])) {
          if (!name.endsWith(IMAGE) && !name.endsWith(PARTIAL)) continue;
          const info = await stat(join(directory, name)).catch(() => undefined);
          if (info?.isFile()) used += info.blocks * 512;
        }
      }
      return fs.bavail * fs.bsize + used;
    },

    async recover() {
      await ledger.thawLeftovers();
      // replaceFileAtomic's temporary files are never resumed: a new attempt makes its own.
      for (const directory of [dir, snapshotsDir]) {
        for (const name of await readdir(directory).catch(() => [] as string[])) {
          if (name.startsWith(TEMPORARY_PREFIX)) await unlink(join(directory, name)).catch(() => undefined);
        }
      }
    },

    async inventory(): Promise<DiskInventory> {
      const [volumes, snapshots] = await Promise.all([listDisks(dir, "volume"), listDisks(snapshotsDir, "snapshot")]);
      return { disks: [...volumes.disks, ...snapshots.disks], partials: [...volumes.partials, ...snapshots.partials] };
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
    if (!mount || device === undefined) return fn();
    return ledger.whileFrozen({ volumeId, mountPoint: mount.mountPoint, device }, fn);
  }
}

/** Overwrites the header area of `file` with noise; false when there is no such file. */
async function eraseHeader(file: string): Promise<boolean> {
  const handle = await open(file, "r+").catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT") return undefined;
    throw err;
  });
  if (!handle) return false;
  try {
    const length = Math.min(ERASE_BYTES, (await handle.stat()).size);
    const noise = Buffer.alloc(length);
    randomFillSync(noise);
    await handle.write(noise, 0, length, 0);
    await handle.datasync();
  } finally {
    await handle.close();
  }
  return true;
}

async function growTo(path: string, bytes: number): Promise<void> {
  if ((await stat(path)).size < bytes) await truncate(path, bytes);
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}
