import { readFile } from "node:fs/promises";
import { scaled } from "./timing.js";
import { join } from "node:path";
import { packageRoot } from "../../lib/paths.js";
import { Daemon } from "./daemon.js";
import type { Testbed } from "./testbed.js";

/** Traffic and captures inside the testbed, driven by dist/test/netns/probe.js and tcpdump. */

function probe(): string {
  return join(packageRoot(), "dist/test/netns/probe.js");
}

export async function startEcho(ns: string, kind: "udp" | "tcp", port: number, logDir: string): Promise<Daemon> {
  const d = new Daemon({ name: `${kind}-echo-${ns}`, netns: ns, logFile: join(logDir, `${kind}-echo-${ns}.log`), argv: [process.execPath, probe(), `${kind}-echo`, String(port)] });
  await d.waitForOutput((o) => o.includes("ready"), scaled(10_000));
  return d;
}

const senders = new Map<string, Daemon>();
let nextSend = 0;

/**
 * One datagram from `ns` to host:port and back (resent every 250 ms); true when the echo
 * arrived within `waitMs`. The default leaves room for a WireGuard handshake retry (5 s).
 * Each namespace gets one long-lived sender process (probe.js agent), started on first use.
 */
export async function send(_tb: Testbed, ns: string, host: string, port: number, message: string, size = 0, waitMs = 8_000): Promise<boolean> {
  let d = senders.get(ns);
  if (!d?.running) {
    d = new Daemon({ name: `sender-${ns}`, netns: ns, logFile: "/dev/null", argv: [process.execPath, probe(), "agent"], stdin: true });
    await d.waitForOutput((o) => o.includes("ready"), scaled(20_000));
    senders.set(ns, d);
  }
  const id = ++nextSend;
  d.write(`${JSON.stringify({ id, host, port, message, size, waitMs: scaled(waitMs) })}\n`);
  const done = new RegExp(`^${id} (ok|fail)$`, "m");
  await d.waitForOutput((o) => done.test(o), scaled(waitMs) + scaled(10_000));
  return done.exec(d.stdout)?.[1] === "ok";
}

/** Stops the senders {@link send} started. */
export async function stopSenders(): Promise<void> {
  for (const d of senders.values()) await d.stop("SIGKILL");
  senders.clear();
}

export interface ProbeStats {
  readonly sent: number;
  readonly received?: number;
  readonly echoed?: number;
  readonly lost?: number;
  readonly closed?: boolean;
  readonly error?: string;
  readonly maxGapMs: number;
}

/** A continuous probe (udp-probe or tcp-stream); `stop()` returns its statistics. */
export async function startProbe(
  ns: string,
  kind: "udp-probe" | "tcp-stream",
  host: string,
  port: number,
  intervalMs: number,
  logDir: string,
): Promise<{ stop(): Promise<ProbeStats>; daemon: Daemon }> {
  const d = new Daemon({ name: `${kind}-${ns}`, netns: ns, logFile: join(logDir, `${kind}-${ns}.log`), argv: [process.execPath, probe(), kind, host, String(port), String(intervalMs)] });
  await d.waitForOutput((o) => o.includes("ready"), scaled(20_000));
  return {
    daemon: d,
    stop: async () => {
      await d.stop("SIGTERM");
      const line = d.stdout.trim().split("\n").pop() ?? "";
      return JSON.parse(line) as ProbeStats;
    },
  };
}

export interface Capture {
  /** Stops tcpdump; returns the raw pcap bytes and tcpdump's decoding of them. */
  stop(): Promise<{ raw: Buffer; text: string }>;
}

export async function startCapture(tb: Testbed, ns: string, iface: string, file: string, logDir: string): Promise<Capture> {
  const d = new Daemon({ name: `tcpdump-${ns}`, netns: ns, logFile: join(logDir, `tcpdump-${ns}.log`), argv: ["tcpdump", "-i", iface, "--immediate-mode", "-U", "-n", "-s", "0", "-w", file] });
  await d.waitForOutput((o) => o.includes("listening on"), scaled(10_000));
  return {
    stop: async () => {
      // Let the last packets reach the file before stopping.
      await new Promise((r) => setTimeout(r, 200));
      await d.stop("SIGINT");
      const raw = await readFile(file);
      const text = (await tb.exec(ns, ["tcpdump", "-r", file, "-n", "-tt"], { okExitCodes: [1] })).stdout;
      return { raw, text };
    },
  };
}

/** GET a URL from inside a namespace (the metrics and health endpoints). */
export async function httpGet(tb: Testbed, ns: string, url: string): Promise<{ ok: boolean; body: string }> {
  const r = await tb.exec(ns, [process.execPath, probe(), "http-get", url], { okExitCodes: [1], timeoutMs: scaled(30_000) });
  return { ok: r.exitCode === 0, body: r.stdout };
}
