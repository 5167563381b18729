import { AbortedError } from "../lib/errors.js";

/**
 * One operation per volume at a time. A second call for a busy volume is not queued: it gets
 * Aborted at once, which tells the CO to retry later (CSI's rule for concurrent operations).
 * Locks are held only while a call runs; calls stop at their deadline (the AbortSignal given
 * to every command), so a hung call cannot keep a volume locked for ever.
 */
export class VolumeLocks {
  private readonly held = new Map<string, string>();

  /** Runs `fn` holding the lock on `key`; `operation` names the holder in Aborted messages. */
  async with<T>(key: string, operation: string, fn: () => Promise<T>): Promise<T> {
    const holder = this.held.get(key);
    if (holder !== undefined) {
      throw new AbortedError(`an operation on ${key} is already in progress (${holder}); retry later`);
    }
    this.held.set(key, operation);
    try {
      return await fn();
    } finally {
      this.held.delete(key);
    }
  }

  isLocked(key: string): boolean {
    return this.held.has(key);
  }
}
