import { execa } from "execa";
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

/** The one place that starts processes. */
export function createRunner(options: RunnerOptions): Runner {
  const defaultTimeoutMs = options.defaultTimeoutMs ?? 120_000;
  const log = options.logger;
  return async (command, runOptions) => {
    const argv = describeCommand(command);
    const started = performance.now();
    const result = await execa(command.file, [...command.args], {
      reject: false,
      stripFinalNewline: false,
      timeout: command.timeoutMs ?? defaultTimeoutMs,
      ...(runOptions?.signal ? { cancelSignal: runOptions.signal } : {}),
      ...(command.input === undefined ? { stdin: "ignore" as const } : { input: command.input }),
      ...(command.env ? { env: command.env } : {}),
    });
    const ms = Math.round(performance.now() - started);
    const stdout = String(result.stdout ?? "");
    const stderr = String(result.stderr ?? "");
    if (result.timedOut) {
      log.warn({ cmd: argv, ms }, "command timed out");
      throw new ExecTimeoutError(argv, `timed out after ${ms} ms`);
    }
    if (result.isCanceled) {
      log.warn({ cmd: argv, ms }, "command cancelled");
      throw new ExecTimeoutError(argv, "was cancelled: the caller's deadline passed");
    }
    const exitCode = result.exitCode;
    if (exitCode === undefined) {
      const code = (result as { code?: string }).code;
      if (code === "ENOENT") throw new CommandNotFoundError(argv, undefined, `${command.file} is not installed`);
      throw new ExecError(argv, undefined, result.message ?? "", { cause: result.cause });
    }
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
