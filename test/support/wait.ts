/**
 * Polls `check` until it returns something other than undefined or false, and returns that.
 * A check that throws is retried too; its last error goes into the timeout's message.
 */
export async function waitFor<T>(what: string | (() => string), check: () => Promise<T | undefined | false>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() > deadline) {
      const text = typeof what === "string" ? what : what();
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${text}${lastErr ? ` (last error: ${(lastErr as Error).message})` : ""}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}
