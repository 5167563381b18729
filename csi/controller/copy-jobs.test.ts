import { describe, expect, it } from "vitest";
import { CopyJobs, describeProgress, waitBudgetMs, waitFor } from "./copy-jobs.js";

describe("CopyJobs", () => {
  it("joins a running copy instead of starting a second one, and forgets it when it ends", async () => {
    const jobs = new CopyJobs();
    let starts = 0;
    let finish!: () => void;
    const start = async (onProgress: (p: { copiedBytes: number; totalBytes: number }) => void): Promise<void> => {
      starts += 1;
      onProgress({ copiedBytes: 1, totalBytes: 4 });
      await new Promise<void>((resolve) => (finish = resolve));
    };
    const first = jobs.ensure("volume:a", start);
    const second = jobs.ensure("volume:a", start);
    expect(second).toBe(first);
    expect(starts).toBe(1);
    expect(await waitFor(first, 10)).toBe(false);
    expect(describeProgress(first.progress)).toBe("25 % (1 of 4 bytes)");
    finish();
    expect(await waitFor(first, 1_000)).toBe(true);
    expect(jobs.isRunning("volume:a")).toBe(false);
  });

  it("hands a failure to whoever waits, and the next call starts afresh", async () => {
    const jobs = new CopyJobs();
    const failed = jobs.ensure("volume:b", async () => {
      throw new Error("disk full");
    });
    await expect(waitFor(failed, 1_000)).rejects.toThrow("disk full");
    expect(jobs.ensure("volume:b", async () => undefined)).not.toBe(failed);
  });
});

describe("waitBudgetMs", () => {
  it("keeps a margin from the caller's deadline for the answer to arrive", () => {
    expect(waitBudgetMs(10_000 + 120_000, 10_000)).toBe(118_000);
    expect(waitBudgetMs(10_000 + 5_000, 10_000)).toBe(4_500);
    expect(waitBudgetMs(10_000 + 1_000, 10_000)).toBe(800);
    expect(waitBudgetMs(10_000 - 5, 10_000)).toBe(0);
  });
  it("waits for the end when there is no deadline", () => {
    expect(waitBudgetMs(Infinity)).toBe(Infinity);
  });
});
