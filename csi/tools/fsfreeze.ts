import type { Command } from "../../lib/exec.js";

/** Suspends writes to a mounted filesystem and flushes it, so that a copy of its disk is consistent. */
export function freeze(mountPoint: string): Command {
  return { file: "fsfreeze", args: ["--freeze", mountPoint] };
}

export function unfreeze(mountPoint: string): Command {
  return { file: "fsfreeze", args: ["--unfreeze", mountPoint] };
}
