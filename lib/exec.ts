import { spawn } from "node:child_process";
import type { Logger } from "./log.js";
import { DeadlineExceededError, InternalError } from "./errors.js";

/**
 * An external command as data: built by the small per-tool modules (cryptsetup, blkid, wg,
 * ip, ...) and run only by a {@link Runner}. Nothing here goes through a shell.
 */
export interface Command {
  readonly file: string;
  readonly args: readonly string[];
  /** Fed to stdin. This is how secrets travel: never in argv, never in a log line. */
  readonly input?: Buffer | string;
  /** Exit codes that are answers, not failures (blkid exits 2 when it finds nothing). */
  readonly okExitCodes?: readonly number[];
  /** Positions in `args` whose values must not be logged. */
  readonly secretArgs?: readonly number[];
  readonly timeoutMs?: number;
  readonly env?: Readonly<Record<string, string>>;
}

export interface CommandResult {
  readonly exitCode: number;
  readonly stdout: string;
  readonly stderr: string;
}

export interface RunOptions {
  /** The caller's deadline or cancellation: the process is killed when it fires. */
  readonly signal?: AbortSignal | undefined;
}

export type Runner = (command: Command, options?: RunOptions) => Promise<CommandResult>;

/** A command ran and exited with a status it does not treat as an answer. */
export class ExecError extends InternalError {
  constructor(
    readonly argv: string,
    readonly exitCode: number | undefined,
    readonly stderr: string,
    options?: { cause?: unknown },
  ) {
    const what = exitCode === undefined ? "could not run" : `exited with status ${exitCode}`;
    super(`${argv} ${what}${stderr ? `: ${stderr.trim()}` : ""}`, options);
  }
}

/** The program is not installed (ENOENT): a deployment problem, not a request problem. */
export class CommandNotFoundError extends ExecError {}

/** The command hit its own timeout or the caller's deadline and was killed. */
export class ExecTimeoutError extends DeadlineExceededError {
  constructor(readonly argv: string, reason: string) {
    super(`${argv} ${reason}`);
  }
}

export interface RunnerOptions {
  readonly logger: Logger;
  /** Used when a command sets none; two minutes fits mkfs of a large volume. */
  readonly defaultTimeoutMs?: number;
}

const REDACTED = "<redacted>";

/** The argv as it may appear in logs and error messages. */
export function describeCommand(command: Command): string {
  const secret = new Set(command.secretArgs ?? []);
  const args = command.args.map((arg, i) => (secret.has(i) ? REDACTED : arg));
  return [command.file, ...args].join(" ");
}

/** After a timeout or cancellation SIGTERM, then this long for the process to go before SIGKILL. */
const KILL_GRACE_MS = 5_000;

interface Outcome {
  readonly exitCode: number | undefined;
  readonly signal: NodeJS.Signals | undefined;
  readonly stdout: string;
  readonly stderr: string;
  readonly spawnError: NodeJS.ErrnoException | undefined;
  readonly timedOut: boolean;
  readonly cancelled: boolean;
}

/**
 * One process, node:child_process directly: no shell, stdin from `input` (else /dev/null),
 * stdout and stderr collected until both close (a detached daemon that keeps them open keeps
 * the call waiting, as it must), the environment extended by `env`. (This was execa, whose
 * module graph alone cost every component about 17 MB of memory: BENCHMARKS.md, netd.)
 */
function runProcess(command: Command, timeoutMs: number, signal: AbortSignal | undefined): Promise<Outcome> {
  return new Promise<Outcome>((resolve) => {
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    let cancelled = false;
    let spawnError: NodeJS.ErrnoException | undefined;
    let killTimer: NodeJS.Timeout | undefined;
    const child = spawn(command.file, [...command.args], {
      stdio: [command.input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
      env: command.env ? { ...process.env, ...command.env } : process.env,
    });
    const kill = () => {
      child.kill("SIGTERM");
      killTimer ??= setTimeout(() => child.kill("SIGKILL"), KILL_GRACE_MS);
    };
    const timer = setTimeout(() => {
      timedOut = true;
      kill();
    }, timeoutMs);
    const onAbort = () => {
      cancelled = true;
      kill();
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    const finish = (exitCode: number | null, exitSignal: NodeJS.Signals | null) => {
      clearTimeout(timer);
      clearTimeout(killTimer);
      signal?.removeEventListener("abort", onAbort);
      resolve({
        exitCode: exitCode ?? undefined,
        signal: exitSignal ?? undefined,
        stdout: Buffer.concat(out).toString("utf8"),
        stderr: Buffer.concat(err).toString("utf8"),
        spawnError,
        timedOut,
        cancelled,
      });
    };
    child.stdout?.on("data", (chunk: Buffer) => out.push(chunk));
    child.stderr?.on("data", (chunk: Buffer) => err.push(chunk));
    child.on("error", (e: NodeJS.ErrnoException) => {
      spawnError ??= e;
      // A process that never started emits no 'close' of its own on every Node version.
      if (child.pid === undefined) finish(null, null);
    });
    child.on("close", (code, exitSignal) => finish(code, exitSignal));
    if (command.input !== undefined && child.stdin) {
      // A process that exits without reading all of its input is not an error of ours.
      child.stdin.on("error", () => undefined);
      child.stdin.end(command.input);
    }
    if (signal?.aborted) onAbort();
  });
}

/** The one place that starts processes. */
export function createRunner(options: RunnerOptions): Runner {
  const defaultTimeoutMs = options.defaultTimeoutMs ?? 120_000;
  const log = options.logger;
  return async (command, runOptions) => {
    const argv = describeCommand(command);
    const started = performance.now();
    const result = await runProcess(command, command.timeoutMs ?? defaultTimeoutMs, runOptions?.signal);
    const ms = Math.round(performance.now() - started);
    const { stdout, stderr } = result;
    if (result.timedOut) {
      log.warn({ cmd: argv, ms }, "command timed out");
      throw new ExecTimeoutError(argv, `timed out after ${ms} ms`);
    }
    if (result.cancelled) {
      log.warn({ cmd: argv, ms }, "command cancelled");
      throw new ExecTimeoutError(argv, "was cancelled: the caller's deadline passed");
    }
    if (result.spawnError) {
      if (result.spawnError.code === "ENOENT") throw new CommandNotFoundError(argv, undefined, `${command.file} is not installed`);
      throw new ExecError(argv, undefined, result.spawnError.message, { cause: result.spawnError });
    }
    const exitCode = result.exitCode;
    if (exitCode === undefined) throw new ExecError(argv, undefined, `killed by ${result.signal ?? "a signal"}${stderr ? `: ${stderr}` : ""}`);
    log.debug({ cmd: argv, exitCode, ms }, "command");
    if (exitCode !== 0 && !(command.okExitCodes ?? []).includes(exitCode)) {
      throw new ExecError(argv, exitCode, stderr);
    }
    return { exitCode, stdout, stderr };
  };
}

/** True when `err` is a command failure with one of the given exit codes. */
export function exitedWith(err: unknown, ...codes: number[]): err is ExecError {
  return err instanceof ExecError && err.exitCode !== undefined && codes.includes(err.exitCode);
}
