import type { Command } from "../../lib/exec.js";

/**
 * Copies a disk image keeping holes (a new 10 GiB volume occupies a few MiB), or sharing
 * blocks outright where the filesystem can (reflink on xfs/btrfs).
 */
export function copySparse(from: string, to: string): Command {
  return { file: "cp", args: ["--sparse=always", "--reflink=auto", "--", from, to], timeoutMs: 3_600_000 };
}
