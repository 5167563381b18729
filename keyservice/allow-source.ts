import { readFile } from "node:fs/promises";
import { FailedPreconditionError } from "../lib/errors.js";
import type { Logger } from "../lib/log.js";
import { fileSignature } from "../lib/tls-files.js";
import { AllowListError, compileAllowList, parseAllowListFile, type AllowList } from "./authz.js";

export interface AllowSourceOptions {
  /** Entries from the command line; always in force. */
  readonly entries: readonly string[];
  /** A file of more entries (a ConfigMap, typically), re-read when it changes. */
  readonly file?: string | undefined;
  readonly pollMs: number;
  readonly logger: Logger;
}

export interface AllowSource {
  current(): AllowList;
  /** Re-reads the file now if it changed (tests; the poll does it otherwise). */
  check(): Promise<void>;
  close(): void;
}

/**
 * The allow-list in force. At startup an unreadable file or a bad entry stops the service; later
 * a bad edit is logged and the previous list stays, so a typo cannot lock every node out.
 */
export async function openAllowSource(options: AllowSourceOptions): Promise<AllowSource> {
  const { file, logger } = options;
  let current = compileOrFail(options.entries, file === undefined ? [] : await readEntries(file));
  if (current.entries.length === 0 && file !== undefined) {
    throw new FailedPreconditionError(`allow-list file ${file} names nobody: no client could get a key`);
  }
  logger.info({ entries: current.entries }, "allow-list loaded");
  if (file === undefined) return { current: () => current, check: () => Promise.resolve(), close: () => undefined };

  let signature = await fileSignature(file);
  let lastError: string | undefined;
  let checking = false;
  const check = async (): Promise<void> => {
    if (checking) return;
    checking = true;
    try {
      const now = await fileSignature(file);
      if (now === signature) return;
      const next = compileOrFail(options.entries, await readEntries(file));
      signature = now;
      lastError = undefined;
      current = next;
      logger.info({ entries: next.entries }, "allow-list reloaded");
    } catch (err) {
      const message = (err as Error).message;
      if (message !== lastError) logger.error({ err: message }, "allow-list file changed but is unusable; keeping the previous list");
      lastError = message;
    } finally {
      checking = false;
    }
  };
  const timer = setInterval(() => void check(), options.pollMs);
  timer.unref();
  return { current: () => current, check, close: () => clearInterval(timer) };
}

async function readEntries(file: string): Promise<string[]> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    throw new FailedPreconditionError(`allow-list file ${file} cannot be read (${(err as NodeJS.ErrnoException).code ?? "error"})`);
  }
  return parseAllowListFile(text);
}

function compileOrFail(flags: readonly string[], fromFile: readonly string[]): AllowList {
  try {
    return compileAllowList([...new Set([...flags, ...fromFile])]);
  } catch (err) {
    if (err instanceof AllowListError) throw new FailedPreconditionError(err.message);
    throw err;
  }
}
