import { open } from "node:fs/promises";
import { parseNetdLog, type LogEntry } from "./netd-log.js";

/**
 * Reads a growing netd log file from where it last stopped, so that waiting for a line costs
 * the new bytes only (a 5 000-node `wg set` is a 150 KB line) and every entry is kept in order.
 */
export class LogFollower {
  private offset = 0;
  private partial = "";
  readonly entries: LogEntry[] = [];

  constructor(readonly path: string) {}

  /** Reads what was appended since the last call; returns the new entries. */
  async poll(): Promise<LogEntry[]> {
    const handle = await open(this.path, "r").catch(() => undefined);
    if (!handle) return [];
    try {
      const { size } = await handle.stat();
      if (size <= this.offset) return [];
      const buffer = Buffer.alloc(size - this.offset);
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, this.offset);
      this.offset += bytesRead;
      const text = this.partial + buffer.subarray(0, bytesRead).toString("utf8");
      const end = text.lastIndexOf("\n");
      this.partial = text.slice(end + 1);
      const fresh = parseNetdLog(text.slice(0, end + 1));
      this.entries.push(...fresh);
      return fresh;
    } finally {
      await handle.close();
    }
  }

  /** Waits for an entry `match` accepts among those at or after `from` (epoch ms). */
  async waitFor(match: (e: LogEntry) => boolean, o: { from: number; timeoutMs: number; what: string; alive?: () => boolean }): Promise<LogEntry> {
    const deadline = Date.now() + o.timeoutMs;
    for (;;) {
      await this.poll();
      const hit = this.entries.find((e) => e.time >= o.from && match(e));
      if (hit) return hit;
      if (o.alive && !o.alive()) throw new Error(`netd exited while waiting for ${o.what} (log: ${this.path})`);
      if (Date.now() > deadline) throw new Error(`timed out after ${o.timeoutMs} ms waiting for ${o.what} in ${this.path}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  /** Waits until nothing was logged for `quietMs`: the reconciles a change set off are over. */
  async waitQuiet(quietMs: number, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = Date.now();
    for (;;) {
      if ((await this.poll()).length > 0) last = Date.now();
      if (Date.now() - last >= quietMs) return;
      if (Date.now() > deadline) throw new Error(`${this.path} did not go quiet for ${quietMs} ms within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}
