/**
 * netd's own log (pino JSON lines, LOG_LEVEL=debug) as the benchmark's clock: every external
 * command is logged when it exits, with its argv and duration, and every reconcile ends with
 * "applied changes" or "in sync". The bench process and netd share the machine's clock, so a
 * line's time is directly comparable with the moment the benchmark made a change.
 */
export interface LogEntry {
  /** Milliseconds since the epoch. */
  readonly time: number;
  readonly msg: string;
  /** The command's argv, for "command" lines. */
  readonly cmd?: string;
  /** The command's duration in ms, for "command" lines. */
  readonly ms?: number;
  /** The reconcile's peer count, for "applied changes" / "in sync" lines. */
  readonly peers?: number;
  readonly peersChanged?: number;
  readonly routesChanged?: number;
}

/** Parses the lines that are JSON objects with a time and a msg; anything else is skipped. */
export function parseNetdLog(text: string): LogEntry[] {
  const entries: LogEntry[] = [];
  for (const line of text.split("\n")) {
    if (!line.startsWith("{")) continue;
    let json: Record<string, unknown>;
    try {
      json = JSON.parse(line) as Record<string, unknown>;
    } catch {
      continue;
    }
    const time = typeof json["time"] === "string" ? Date.parse(json["time"]) : Number.NaN;
    if (!Number.isFinite(time) || typeof json["msg"] !== "string") continue;
    const num = (key: string) => (typeof json[key] === "number" ? { [key]: json[key] } : {});
    entries.push({
      time,
      msg: json["msg"],
      ...(typeof json["cmd"] === "string" ? { cmd: json["cmd"] } : {}),
      ...num("ms"),
      ...num("peers"),
      ...num("peersChanged"),
      ...num("routesChanged"),
    } as LogEntry);
  }
  return entries;
}

export function isReconcileEnd(e: LogEntry): boolean {
  return e.msg === "applied changes" || e.msg === "in sync";
}

/** The program a command line runs ("wg", "ip", "nft", "wireguard-go"). */
export function programOf(cmd: string): string {
  return (cmd.split(" ")[0] ?? "").split("/").pop() ?? "";
}

/** The commands netd ran in (from, to], counted by program. */
export function commandsBetween(entries: readonly LogEntry[], from: number, to: number): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const e of entries) {
    if (e.cmd === undefined || e.time <= from || e.time > to) continue;
    const program = programOf(e.cmd);
    counts[program] = (counts[program] ?? 0) + 1;
  }
  return counts;
}

/** The first entry after `from` (inclusive) that `match` accepts. */
export function firstAfter(entries: readonly LogEntry[], from: number, match: (e: LogEntry) => boolean): LogEntry | undefined {
  return entries.find((e) => e.time >= from && match(e));
}

/** When a peer with `publicKey` entered the interface: the end of the `wg set` that names it. */
export function peerSetAt(entries: readonly LogEntry[], from: number, publicKey: string): LogEntry | undefined {
  return firstAfter(entries, from, (e) => e.cmd !== undefined && e.cmd.startsWith("wg set ") && e.cmd.includes(` peer ${publicKey} `) && !e.cmd.includes(` peer ${publicKey} remove`));
}

/** The sum of the durations of the commands in (from, to], in ms. */
export function commandMsBetween(entries: readonly LogEntry[], from: number, to: number): number {
  return entries.filter((e) => e.cmd !== undefined && e.time > from && e.time <= to).reduce((sum, e) => sum + (e.ms ?? 0), 0);
}
