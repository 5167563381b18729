import { constants } from "node:fs";
import { access, open } from "node:fs/promises";
import type { Runner } from "../../../lib/exec.js";
import { NotFoundError } from "../../../lib/errors.js";
import * as losetup from "../../tools/losetup.js";
import type { NodeDiskSource } from "../disk-source.js";
import { volumeImagePath } from "./layout.js";

export interface LocalNodeSourceOptions {
  /** The directory holding the volumes' sparse files. */
  readonly dir: string;
  readonly run: Runner;
}

/** The node half of the local source: a volume's sparse file, attached as a loop device. */
export function createLocalNodeSource(options: LocalNodeSourceOptions): NodeDiskSource {
  const { dir, run } = options;

  async function attachedDevices(volumeId: string): Promise<string[]> {
    const file = volumeImagePath(dir, volumeId);
    const result = await run(losetup.findByFile(file));
    return losetup.parseDeviceList(result.stdout);
  }

  return {
    kind: "local",
    async attach({ volumeId, signal }) {
      const file = volumeImagePath(dir, volumeId);
      try {
        await access(file);
      } catch {
        throw new NotFoundError(`volume ${volumeId} does not exist (no ${file})`);
      }
      const [existing] = await attachedDevices(volumeId);
      if (existing) return existing;
      const result = await run(losetup.attach(file, await supportsDirectIo(file)), { signal });
      return result.stdout.trim();
    },
    async findAttached(volumeId) {
      return (await attachedDevices(volumeId))[0];
    },
    async detach({ volumeId, signal }) {
      // More than one loop device can point at the file if an earlier attach raced a crash.
      for (const device of await attachedDevices(volumeId)) {
        await run(losetup.detach(device), { signal });
      }
    },
    async refreshSize({ volumeId, signal }) {
      for (const device of await attachedDevices(volumeId)) {
        await run(losetup.refreshCapacity(device), { signal });
      }
    },
  };
}

/** tmpfs, for one, refuses O_DIRECT, and losetup then refuses the whole attach. */
async function supportsDirectIo(file: string): Promise<boolean> {
  try {
    await (await open(file, constants.O_RDONLY | constants.O_DIRECT)).close();
    return true;
  } catch {
    return false;
  }
}
