import type { DestinationStream } from "pino";

/**
 * Log lines gathered into batches before they reach the file descriptor's stream: one write of
 * up to `maxBytes` (or whatever `maxDelayMs` collected) instead of one per line. A busy key
 * service writes an audit line per request; handed to SonicBoom one by one, each line cost
 * about 4 µs, mostly SonicBoom measuring its whole pending buffer again (Buffer.byteLength)
 * on every write — as much as deriving the key. Batched, a line costs what pino spends
 * formatting it (bench/keyservice's profile).
 *
 * A crash loses at most the last `maxDelayMs` of lines (as SonicBoom's own buffering did);
 * `flush()` hands everything over, and SIGTERM calls it before the stream is ended.
 */
export class LineBatcher implements DestinationStream {
  private pending: string[] = [];
  private bytes = 0;
  private maxBytes: number;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly sink: { write(text: string): unknown },
    o: { maxBytes: number; maxDelayMs: number },
  ) {
    this.maxBytes = o.maxBytes;
    this.timer = setInterval(() => this.flush(), o.maxDelayMs);
    this.timer.unref();
  }

  write(line: string): void {
    this.pending.push(line);
    this.bytes += line.length;
    if (this.bytes >= this.maxBytes) this.flush();
  }

  flush(): void {
    if (this.pending.length === 0) return;
    const text = this.pending.join("");
    this.pending = [];
    this.bytes = 0;
    this.sink.write(text);
  }

  /** Flushes and stops the timer; further lines are still accepted and flushed on write. */
  close(): void {
    clearInterval(this.timer);
    this.flush();
    this.maxBytes = 0;
  }
}
