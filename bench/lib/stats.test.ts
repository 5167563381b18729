import { describe, expect, it } from "vitest";
import { median, percentile, round, summarize } from "./stats.js";

describe("percentile (nearest rank)", () => {
  it("picks a measured value, never an interpolation", () => {
    const five = [50, 10, 40, 20, 30];
    expect(percentile(five, 50)).toBe(30);
    expect(percentile(five, 90)).toBe(50);
    expect(percentile(five, 20)).toBe(10);
    expect(percentile(five, 100)).toBe(50);
  });

  it("takes the lower middle of an even count as the median", () => {
    expect(median([4, 1, 3, 2])).toBe(2);
  });

  it("p99 of 50 samples is the largest, p99 of 200 the second largest", () => {
    const fifty = Array.from({ length: 50 }, (_, i) => i + 1);
    expect(percentile(fifty, 99)).toBe(50);
    const twoHundred = Array.from({ length: 200 }, (_, i) => i + 1);
    expect(percentile(twoHundred, 99)).toBe(198);
  });

  it("is NaN for no samples and refuses a percentile out of range", () => {
    expect(percentile([], 50)).toBeNaN();
    expect(() => percentile([1], 0)).toThrow(RangeError);
    expect(() => percentile([1], 101)).toThrow(RangeError);
  });
});

describe("summarize", () => {
  it("reports count, extremes, percentiles and mean without reordering the input", () => {
    const samples = [3, 1, 2];
    expect(summarize(samples)).toEqual({ n: 3, min: 1, p50: 2, p90: 3, p99: 3, max: 3, mean: 2 });
    expect(samples).toEqual([3, 1, 2]);
  });

  it("is all NaN but n for no samples", () => {
    const empty = summarize([]);
    expect(empty.n).toBe(0);
    expect(empty.p50).toBeNaN();
    expect(empty.mean).toBeNaN();
  });
});

describe("round", () => {
  it("keeps the given number of decimals and leaves non-finite values alone", () => {
    expect(round(1.23456)).toBe(1.235);
    expect(round(1.23456, 1)).toBe(1.2);
    expect(round(Number.NaN)).toBeNaN();
  });
});
