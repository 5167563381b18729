import type { Command } from "../../lib/exec.js";

/**
 * A copy that shares the source's blocks (reflink, on xfs and btrfs): instant, and it fails at
 * once where the filesystem cannot share blocks, leaving the caller to copy the bytes itself.
 */
export function reflinkCopy(from: string, to: string): Command {
  return { file: "cp", args: ["--reflink=always", "--sparse=always", "--", from, to], timeoutMs: 600_000 };
}
