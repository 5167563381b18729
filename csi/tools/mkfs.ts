import type { Command } from "../../lib/exec.js";

export const FILESYSTEMS = ["ext4", "xfs"] as const;
export type Filesystem = (typeof FILESYSTEMS)[number];

export function isFilesystem(value: string): value is Filesystem {
  return (FILESYSTEMS as readonly string[]).includes(value);
}

/**
 * Neither command gets its "force" flag: cloak has already established that the device is
 * empty, and if that were ever wrong, mkfs's own refusal to overwrite a filesystem is a second
 * line of defence.
 */
export function mkfs(fsType: Filesystem, device: string): Command {
  switch (fsType) {
    case "ext4":
      return { file: "mkfs.ext4", args: ["-q", device], timeoutMs: 600_000 };
    case "xfs":
      return { file: "mkfs.xfs", args: ["-q", device], timeoutMs: 600_000 };
  }
}

/** Grows a mounted filesystem to fill its device. */
export function growFilesystem(fsType: Filesystem, device: string, mountPoint: string): Command {
  switch (fsType) {
    case "ext4":
      return { file: "resize2fs", args: [device], timeoutMs: 600_000 };
    case "xfs":
      return { file: "xfs_growfs", args: [mountPoint], timeoutMs: 600_000 };
  }
}

export function version(fsType: Filesystem): Command {
  return { file: fsType === "ext4" ? "mkfs.ext4" : "mkfs.xfs", args: ["-V"], timeoutMs: 10_000 };
}

/**
 * Mount options cloak adds. XFS refuses to mount two filesystems with the same UUID on one
 * node, which is exactly what a clone and its source are.
 */
export function implicitMountOptions(fsType: Filesystem): string[] {
  return fsType === "xfs" ? ["nouuid"] : [];
}
