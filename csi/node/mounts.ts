import { readFile, stat } from "node:fs/promises";
import type { Runner } from "../../lib/exec.js";
import { mountsAt, parseMountInfo, unmount, type MountEntry } from "../tools/mount.js";

/** The mounts of this process's mount namespace, which is the host's for the node plugin. */
export async function readMounts(): Promise<MountEntry[]> {
  return parseMountInfo(await readFile("/proc/self/mountinfo", "utf8"));
}

/** The mount a reader of `path` sees, if `path` is a mount point. */
export async function topMountAt(path: string): Promise<MountEntry | undefined> {
  return mountsAt(await readMounts(), path).at(-1);
}

/** "major:minor" of a device node, as /proc/self/mountinfo writes it. */
export async function deviceNumber(devicePath: string): Promise<string> {
  const { rdev } = await stat(devicePath, { bigint: true });
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn);
  return `${major}:${minor}`;
}

/** Unmounts everything stacked on `path` (a crashed retry can leave two mounts). */
export async function unmountAll(run: Runner, path: string, signal?: AbortSignal): Promise<number> {
  let count = 0;
  while (await topMountAt(path)) {
    await run(unmount(path), { signal });
    count += 1;
  }
  return count;
}
