import { spawn } from "node:child_process";

/**
 * Whether a write to `file` completes within `ms`: false while its filesystem is frozen. Such
 * a write blocks in the kernel (unkillable) until the filesystem is thawed, so it runs in a
 * child process, which a thaw by the test's cleanup (test/support/scrub.ts) sets free.
 */
export function writesWithin(file: string, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const child = spawn("sh", ["-c", 'echo written > "$1" && sync "$1"', "sh", file], { stdio: "ignore" });
    const timer = setTimeout(() => resolve(false), ms);
    child.once("exit", (code) => {
      clearTimeout(timer);
      resolve(code === 0);
    });
  });
}
