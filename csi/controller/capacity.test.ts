import { describe, expect, it } from "vitest";
import { InvalidArgumentError, OutOfRangeError } from "../../lib/errors.js";
import {
  DEFAULT_VOLUME_BYTES,
  FILESYSTEM_MINIMUM_BYTES,
  LUKS_HEADER_BYTES,
  MiB,
  largestCapacity,
  minimumCapacityBytes,
  parseCapacityRange,
  promisableBytes,
  satisfies,
  sizeFor,
} from "./capacity.js";

const plain = { integrity: false, minimumBytes: 0 };
const ext4 = { integrity: false, minimumBytes: FILESYSTEM_MINIMUM_BYTES.ext4 };

describe("sizeFor", () => {
  it.each([
    ["exactly what was asked, header on top", { requiredBytes: 100 * MiB, limitBytes: 0 }, 100 * MiB, 100 * MiB],
    ["the exact size when required = limit", { requiredBytes: 1024 * MiB, limitBytes: 1024 * MiB }, 1024 * MiB, 1024 * MiB],
    ["the size asked for, on whole 4 KiB sectors", { requiredBytes: 10 * MiB + 1, limitBytes: 0 }, 10 * MiB + 1, 10 * MiB + 4096],
    ["the default when nothing is asked", { requiredBytes: 0, limitBytes: 0 }, DEFAULT_VOLUME_BYTES, DEFAULT_VOLUME_BYTES],
    ["the limit when only a small limit is given", { requiredBytes: 0, limitBytes: 64 * MiB }, 64 * MiB, 64 * MiB],
    ["the sectors below an unaligned limit", { requiredBytes: 0, limitBytes: 64 * MiB + 100 }, 64 * MiB, 64 * MiB],
  ])("gives %s", (_name, range, capacity, device) => {
    expect(sizeFor(range, plain)).toEqual({ capacityBytes: capacity, diskBytes: device + LUKS_HEADER_BYTES });
  });

  it.each([
    ["1 byte, ext4", 1, "ext4", 8 * MiB],
    ["4 KiB, ext4", 4096, "ext4", 8 * MiB],
    ["1 byte, xfs", 1, "xfs", 300 * MiB],
    ["299 MiB, xfs", 299 * MiB, "xfs", 300 * MiB],
  ] as const)("raises %s to the filesystem's minimum and reports it", (_name, required, fs, capacity) => {
    const sizing = sizeFor({ requiredBytes: required, limitBytes: 0 }, { integrity: false, minimumBytes: FILESYSTEM_MINIMUM_BYTES[fs] });
    expect(sizing).toEqual({ capacityBytes: capacity, diskBytes: capacity + LUKS_HEADER_BYTES });
  });

  it("gives a block volume as little as one sector", () => {
    expect(sizeFor({ requiredBytes: 1, limitBytes: 0 }, { integrity: false, minimumBytes: 4096 })).toEqual({
      capacityBytes: 4096,
      diskBytes: 4096 + LUKS_HEADER_BYTES,
    });
  });

  it("adds integrity's tag and journal space to the disk, not to the promised capacity", () => {
    const sizing = sizeFor({ requiredBytes: 1024 * MiB, limitBytes: 0 }, { integrity: true, minimumBytes: 0 });
    expect(sizing.capacityBytes).toBe(1024 * MiB);
    // Measured: the decrypted device is 1.6 % smaller than the data area.
    expect(sizing.diskBytes - LUKS_HEADER_BYTES).toBeGreaterThanOrEqual(Math.ceil((1024 * MiB) / (1 - 0.016)));
  });

  it.each([
    ["required above limit", { requiredBytes: 2 * MiB, limitBytes: MiB }, plain, /exceeds limit_bytes/],
    ["a limit that is not sector-aligned and below the aligned size", { requiredBytes: MiB + 1, limitBytes: MiB + 100 }, plain, /whole 4 KiB sectors/],
    ["a limit below the filesystem's minimum", { requiredBytes: MiB, limitBytes: 4 * MiB }, ext4, /smallest this volume's filesystem can be made on is 8388608/],
    ["a limit-only request below the minimum", { requiredBytes: 0, limitBytes: 4 * MiB }, ext4, /8388608/],
    ["negative sizes", { requiredBytes: -1, limitBytes: 0 }, plain, /negative/],
  ])("refuses %s with OutOfRange", (_name, range, options, message) => {
    expect(() => sizeFor(range, options)).toThrow(OutOfRangeError);
    expect(() => sizeFor(range, options)).toThrow(message);
  });
});

describe("parseCapacityRange", () => {
  it("reads int64 strings", () => {
    expect(parseCapacityRange({ required_bytes: "1024", limit_bytes: "2048" })).toEqual({ requiredBytes: 1024, limitBytes: 2048 });
    expect(parseCapacityRange(null)).toEqual({ requiredBytes: 0, limitBytes: 0 });
  });

  it("refuses a required size no volume can have (1 EiB) with OutOfRange, not InvalidArgument", () => {
    expect(() => parseCapacityRange({ required_bytes: String(2n ** 60n) })).toThrow(OutOfRangeError);
  });

  it("takes a huge limit as no limit", () => {
    expect(parseCapacityRange({ required_bytes: "1", limit_bytes: String(2n ** 62n) }).limitBytes).toBe(Number.MAX_SAFE_INTEGER);
  });

  it("refuses text with InvalidArgument", () => {
    expect(() => parseCapacityRange({ required_bytes: "12k" })).toThrow(InvalidArgumentError);
  });
});

describe("minimumCapacityBytes", () => {
  const mount = (fsType?: "ext4" | "xfs") => ({ kind: "mount" as const, fsType, mountFlags: [], mode: "SINGLE_NODE_WRITER" as const });
  it("takes the filesystem a mount capability names, else the StorageClass's", () => {
    expect(minimumCapacityBytes([mount("xfs")], "ext4")).toBe(300 * MiB);
    expect(minimumCapacityBytes([mount()], "xfs")).toBe(300 * MiB);
    expect(minimumCapacityBytes([mount()], "ext4")).toBe(8 * MiB);
  });
  it("needs one sector for block access", () => {
    expect(minimumCapacityBytes([{ kind: "block", mode: "SINGLE_NODE_WRITER" }], "xfs")).toBe(4096);
  });
});

describe("accounting", () => {
  it("promises the pool times the overcommit ratio, less what disks already take", () => {
    expect(promisableBytes(1000 * MiB, 1, 300 * MiB)).toBe(700 * MiB);
    expect(promisableBytes(1000 * MiB, 2.5, 300 * MiB)).toBe(2200 * MiB);
    expect(promisableBytes(1000 * MiB, 1, 1300 * MiB)).toBe(0);
  });

  it("finds the largest volume whose disk fits", () => {
    expect(largestCapacity(116 * MiB, plain)).toBe(100 * MiB);
    const integrity = largestCapacity(1100 * MiB, { integrity: true, minimumBytes: 0 });
    expect(sizeFor({ requiredBytes: integrity, limitBytes: 0 }, { integrity: true, minimumBytes: 0 }).diskBytes).toBeLessThanOrEqual(1100 * MiB);
    expect(sizeFor({ requiredBytes: integrity + MiB, limitBytes: 0 }, { integrity: true, minimumBytes: 0 }).diskBytes).toBeGreaterThan(1100 * MiB);
    expect(largestCapacity(20 * MiB, ext4)).toBe(0);
    expect(largestCapacity(10 * MiB, plain)).toBe(0);
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
