import { spawn, type ChildProcess } from "node:child_process";
import { NODE_COMPILE_CACHE } from "./timing.js";
import { createWriteStream, type WriteStream } from "node:fs";
import { once } from "node:events";

/**
 * A long-running process a test starts (etcd, kube-apiserver, netd, a probe), optionally
 * inside a network namespace, with its output kept in a log file for when a test fails.
 * The short commands go through lib/exec's Runner; these never end on their own.
 */
export interface DaemonOptions {
  readonly name: string;
  readonly argv: readonly string[];
  /** Run inside this network namespace (`ip netns exec`). */
  readonly netns?: string;
  /** Where stdout and stderr go; also kept in memory (last 64 KiB) for assertions. */
  readonly logFile: string;
  readonly env?: Readonly<Record<string, string>>;
  /** Keep stdin open for {@link Daemon.write}. */
  readonly stdin?: boolean;
}

export class Daemon {
  private output = "";
  private exited: Promise<number | null>;
  private readonly log: WriteStream;
  readonly child: ChildProcess;

  constructor(readonly o: DaemonOptions) {
    const argv = o.netns ? ["ip", "netns", "exec", o.netns, ...o.argv] : [...o.argv];
    this.log = createWriteStream(o.logFile, { flags: "a" });
    const [file = "", ...args] = argv;
    this.child = spawn(file, args, { stdio: [o.stdin ? "pipe" : "ignore", "pipe", "pipe"], env: { ...process.env, ...NODE_COMPILE_CACHE, ...o.env } });
    const keep = (chunk: Buffer) => {
      this.log.write(chunk);
      this.output = (this.output + chunk.toString()).slice(-65536);
    };
    this.child.stdout?.on("data", keep);
    this.child.stderr?.on("data", keep);
    this.exited = once(this.child, "exit").then(([code]) => code as number | null);
    this.exited.catch(() => undefined);
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  write(text: string): void {
    this.child.stdin?.write(text);
  }

  /** What the process printed so far (the tail). */
  get stdout(): string {
    return this.output;
  }

  /** Waits until `predicate` holds on the output, or fails with the output in the message. */
  async waitForOutput(predicate: (out: string) => boolean, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate(this.output)) {
      if (!this.running) throw new Error(`${this.o.name} exited (${this.child.exitCode ?? this.child.signalCode}):\n${this.output.slice(-4000)}`);
      if (Date.now() > deadline) throw new Error(`${this.o.name}: timed out waiting; output so far:\n${this.output.slice(-4000)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Sends `signal` and waits for the exit; SIGKILL after `graceMs`. */
  async stop(signal: NodeJS.Signals = "SIGTERM", graceMs = 10_000): Promise<number | null> {
    if (this.running) {
      this.child.kill(signal);
      const timer = setTimeout(() => this.child.kill("SIGKILL"), graceMs);
      try {
        await this.exited;
      } finally {
        clearTimeout(timer);
      }
    }
    await new Promise<void>((resolve) => this.log.end(resolve));
    return this.child.exitCode;
  }

  wait(): Promise<number | null> {
    return this.exited;
  }
}
