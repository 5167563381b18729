import type { Command, CommandResult } from "../../lib/exec.js";
import type { Filesystem } from "./mkfs.js";

/**
 * Filesystem checks before a mount. ext4: `e2fsck -p` ("preen"), which checks when the
 * filesystem asks for it (not cleanly unmounted, errors recorded by the kernel, check interval
 * due), repairs what is safe to repair without a person, and exits 4 for the rest. xfs:
 * `xfs_repair -n`, which only looks; xfs repairs its own log at mount.
 */
export function check(fsType: Filesystem, device: string): Command {
  switch (fsType) {
    case "ext4":
      // e2fsck(8): 1 errors corrected, 2 corrected (reboot advised, for a mounted root), 4 left uncorrected.
      return { file: "e2fsck", args: ["-p", device], okExitCodes: [1, 2, 4], timeoutMs: 3_600_000 };
    case "xfs":
      // xfs_repair(8): -n exits 1 when it finds corruption.
      return { file: "xfs_repair", args: ["-n", device], okExitCodes: [1], timeoutMs: 3_600_000 };
  }
}

export type CheckVerdict =
  | { readonly verdict: "clean" }
  | { readonly verdict: "repaired"; readonly detail: string }
  /** The log holds changes that only a mount replays: what xfs_repair -n saw may be stale. */
  | { readonly verdict: "log-to-replay" }
  | { readonly verdict: "needs-repair"; readonly detail: string };

export function interpret(fsType: Filesystem, result: CommandResult): CheckVerdict {
  const detail = summary(result);
  if (fsType === "ext4") {
    if (result.exitCode === 0) return { verdict: "clean" };
    if (result.exitCode === 1 || result.exitCode === 2) return { verdict: "repaired", detail };
    return { verdict: "needs-repair", detail };
  }
  if (result.exitCode === 0) return { verdict: "clean" };
  if (/metadata changes in a log/.test(result.stderr + result.stdout)) return { verdict: "log-to-replay" };
  return { verdict: "needs-repair", detail };
}

/** The checker's last lines: where it says what it found. */
function summary(result: CommandResult): string {
  const lines = `${result.stdout}\n${result.stderr}`.split("\n").map((l) => l.trim()).filter((l) => l !== "");
  return lines.slice(-6).join("; ");
}
