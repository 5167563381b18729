import type { CopyProgress } from "../disk/disk-source.js";

/**
 * Copies (clone, restore, snapshot) run in the background, outside any one request: a large
 * copy takes longer than the CO's deadline, so each CreateVolume or CreateSnapshot retry joins
 * the copy already running for its target, waits for as long as its own deadline allows, and
 * answers Aborted ("in progress, retry") until the copy is done. A copy that fails is
 * forgotten, so the next retry starts it again (resuming from its recorded progress).
 */
export class CopyJobs {
  private readonly jobs = new Map<string, CopyJob>();

  /** The copy running into `key`, or a new one made by `start`. */
  ensure(key: string, start: (onProgress: (progress: CopyProgress) => void) => Promise<void>): CopyJob {
    const running = this.jobs.get(key);
    if (running) return running;
    const job: CopyJob = { key, progress: undefined, done: Promise.resolve() };
    job.done = start((progress) => (job.progress = progress)).finally(() => this.jobs.delete(key));
    // Nobody may be waiting when it fails; the next retry sees the failure again.
    job.done.catch(() => undefined);
    this.jobs.set(key, job);
    return job;
  }

  isRunning(key: string): boolean {
    return this.jobs.has(key);
  }
}

export interface CopyJob {
  readonly key: string;
  progress: CopyProgress | undefined;
  done: Promise<void>;
}

/**
 * Waits for `job` at most `budgetMs`: true when it finished, false when it is still running.
 * A failed copy throws its error.
 */
export async function waitFor(job: CopyJob, budgetMs: number): Promise<boolean> {
  if (budgetMs === Infinity) {
    await job.done;
    return true;
  }
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), Math.max(0, budgetMs));
  });
  try {
    return await Promise.race([job.done.then(() => true as const), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * How long a call may wait before it must answer: its deadline less a margin for the answer
 * to reach the caller (a tenth of the time left, between 0.2 and 2 s); forever without one.
 */
export function waitBudgetMs(deadline: Date | number, now = Date.now()): number {
  const at = deadline instanceof Date ? deadline.getTime() : deadline;
  if (!Number.isFinite(at)) return Infinity;
  const remaining = Math.max(0, at - now);
  const margin = Math.min(2_000, Math.max(200, remaining * 0.1));
  return Math.max(0, remaining - margin);
}

export function describeProgress(progress: CopyProgress | undefined): string {
  if (!progress || progress.totalBytes === 0) return "starting";
  const percent = Math.floor((progress.copiedBytes / progress.totalBytes) * 100);
  return `${percent} % (${progress.copiedBytes} of ${progress.totalBytes} bytes)`;
}
