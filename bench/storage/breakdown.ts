/**
 * Where a CSI call's time went, read from the server's own log: the gRPC handler logs one
 * "call" line per request (with its duration) and the Runner one "command" line per external
 * command (argv and duration, at debug level). Calls are made one at a time, so the commands
 * logged between the start of a call and its "call" line are that call's.
 */
export type LogLine = Readonly<Record<string, unknown>>;

export interface CommandTime {
  /** Program and the argument that says what it does: "cryptsetup open", "losetup --find". */
  readonly name: string;
  readonly ms: number;
}

export interface CallBreakdown {
  /** The handler's own measure of the call, from its "call" line. */
  readonly serverMs: number;
  readonly commands: readonly CommandTime[];
  /** Time in the handler outside external commands: Node, key derivation, /proc reads. */
  readonly outsideCommandsMs: number;
}

/** What an argv does, in two words: the program and its operation. */
export function commandName(argv: string): string {
  const [program = "?", ...args] = argv.split(" ");
  const base = program.split("/").at(-1) ?? program;
  switch (base) {
    case "cryptsetup":
      return `cryptsetup ${args[0] ?? ""}`.trim();
    case "losetup": {
      const op = args.find((a) => ["--associated", "--find", "--detach", "--set-capacity", "--list"].includes(a));
      return op ? `losetup ${op}` : "losetup";
    }
    case "blkid":
      return args.includes("-p") ? "blkid -p" : "blkid";
    case "blockdev":
      return `blockdev ${args.find((a) => a.startsWith("--")) ?? ""}`.trim();
    default:
      return base;
  }
}

/**
 * The breakdown of the first `method` call on `volumeId` logged at or after `from` (an index
 * into `lines`), or undefined while its "call" line has not arrived yet.
 */
export function breakdownCall(lines: readonly LogLine[], from: number, method: string, volumeId: string): CallBreakdown | undefined {
  const commands: CommandTime[] = [];
  for (let i = from; i < lines.length; i++) {
    const line = lines[i];
    if (!line) continue;
    if (line["msg"] === "command" && typeof line["cmd"] === "string") {
      commands.push({ name: commandName(line["cmd"]), ms: Number(line["ms"]) });
      continue;
    }
    const isCall = line["msg"] === "call" || line["msg"] === "call failed";
    if (isCall && String(line["method"]).endsWith(`/${method}`) && line["volume_id"] === volumeId) {
      if (line["code"] !== "OK") throw new Error(`${method} ${volumeId} failed: ${String(line["err"] ?? line["code"])}`);
      const serverMs = Number(line["ms"]);
      const inCommands = commands.reduce((sum, c) => sum + c.ms, 0);
      return { serverMs, commands, outsideCommandsMs: serverMs - inCommands };
    }
  }
  return undefined;
}

/** Polls `lines` (appended to as the server's output arrives) until the call's line is there. */
export async function awaitBreakdown(
  lines: readonly LogLine[],
  from: number,
  method: string,
  volumeId: string,
  timeoutMs = 10_000,
): Promise<CallBreakdown> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = breakdownCall(lines, from, method, volumeId);
    if (found) return found;
    if (Date.now() > deadline) throw new Error(`no "call" log line for ${method} ${volumeId} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
