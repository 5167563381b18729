import type { Command } from "../../lib/exec.js";

/**
 * losetup invocations. Attaching uses direct I/O where the backing filesystem supports it, so
 * that a volume's pages are not cached twice (once for the loop device, once for its file).
 */
export function attach(file: string, directIo: boolean): Command {
  return { file: "losetup", args: ["--find", "--show", ...(directIo ? ["--direct-io=on"] : []), file] };
}

/** Lists the loop devices backed by `file`, one name per line. */
export function findByFile(file: string): Command {
  return { file: "losetup", args: ["--noheadings", "--output", "NAME", "--associated", file] };
}

export function detach(device: string): Command {
  return { file: "losetup", args: ["--detach", device] };
}

/** Makes the loop device pick up its backing file's new size. */
export function refreshCapacity(device: string): Command {
  return { file: "losetup", args: ["--set-capacity", device] };
}

export function parseDeviceList(stdout: string): string[] {
  return stdout
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line.startsWith("/dev/"));
}
