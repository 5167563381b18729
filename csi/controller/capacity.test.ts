import { describe, expect, it } from "vitest";
import { OutOfRangeError } from "../../lib/errors.js";
import { DEFAULT_VOLUME_BYTES, LUKS_HEADER_BYTES, MiB, satisfies, sizeFor } from "./capacity.js";

describe("sizeFor", () => {
  it.each([
    ["exactly what was asked, header on top", { requiredBytes: 100 * MiB, limitBytes: 0 }, 100 * MiB],
    ["the exact size when required = limit", { requiredBytes: 1024 * MiB, limitBytes: 1024 * MiB }, 1024 * MiB],
    ["rounded up to whole 4 KiB sectors", { requiredBytes: 10 * MiB + 1, limitBytes: 0 }, 10 * MiB + 4096],
    ["the default when nothing is asked", { requiredBytes: 0, limitBytes: 0 }, DEFAULT_VOLUME_BYTES],
    ["the limit when only a small limit is given", { requiredBytes: 0, limitBytes: 64 * MiB }, 64 * MiB],
  ])("gives %s", (_name, range, capacity) => {
    expect(sizeFor(range, false)).toEqual({ capacityBytes: capacity, diskBytes: capacity + LUKS_HEADER_BYTES });
  });

  it("adds integrity's tag and journal space to the disk, not to the promised capacity", () => {
    const sizing = sizeFor({ requiredBytes: 1024 * MiB, limitBytes: 0 }, true);
    expect(sizing.capacityBytes).toBe(1024 * MiB);
    // Measured: the decrypted device is 1.6 % smaller than the data area.
    expect(sizing.diskBytes - LUKS_HEADER_BYTES).toBeGreaterThanOrEqual(Math.ceil((1024 * MiB) / (1 - 0.016)));
  });

  it.each([
    ["required above limit", { requiredBytes: 2 * MiB, limitBytes: MiB }],
    ["a limit that is not sector-aligned and below the aligned size", { requiredBytes: MiB + 1, limitBytes: MiB + 100 }],
    ["negative sizes", { requiredBytes: -1, limitBytes: 0 }],
  ])("refuses %s with OutOfRange", (_name, range) => {
    expect(() => sizeFor(range, false)).toThrow(OutOfRangeError);
  });
});

describe("satisfies", () => {
  it("accepts a repeated request the existing size fits", () => {
    expect(satisfies(100 * MiB, { requiredBytes: 100 * MiB, limitBytes: 0 })).toBe(true);
    expect(satisfies(100 * MiB, { requiredBytes: 50 * MiB, limitBytes: 200 * MiB })).toBe(true);
  });
  it("rejects one it does not", () => {
    expect(satisfies(100 * MiB, { requiredBytes: 200 * MiB, limitBytes: 200 * MiB })).toBe(false);
    expect(satisfies(100 * MiB, { requiredBytes: 0, limitBytes: 50 * MiB })).toBe(false);
  });
});
