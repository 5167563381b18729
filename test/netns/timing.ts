/**
 * Waits in the netns tests are sized for this machine. Inside the VM tier's emulated CPU (TCG)
 * everything runs many times slower — Node's start-up most of all (a netd start took 100-250 s
 * there on a loaded machine) — so waits stretch by this factor; they are upper bounds, and
 * what a test measures (gaps, losses) is not scaled.
 */
export const TIME_SCALE = process.env["CLOAK_VM_MODE"] === "vm" ? 20 : 1;

export function scaled(ms: number): number {
  return ms * TIME_SCALE;
}

/**
 * Node keeps compiled code here, so the many short Node processes of a test start faster. One
 * cache already set (the VM tier's guest sets one for everything it runs) is used as it is.
 */
export const NODE_COMPILE_CACHE = { NODE_COMPILE_CACHE: process.env["NODE_COMPILE_CACHE"] ?? "/tmp/cloak-nd-node-compile-cache" };
