import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { FIO_SHAPES, fioCommand, parseFioJson } from "./fio.js";

const captured = readFileSync(join(import.meta.dirname, "testdata", "fio-randrw.json"), "utf8");

describe("parseFioJson", () => {
  it("reads bandwidth, IOPS and latency of both directions from fio 3.33's output", () => {
    const figures = parseFioJson(captured);
    expect(figures.read.mibPerSecond).toBeCloseTo(124647704 / 1048576, 6);
    expect(figures.read.iops).toBeCloseTo(30431.57, 1);
    expect(figures.write.iops).toBeCloseTo(12973.03, 1);
    expect(figures.iops).toBeCloseTo(30431.57 + 12973.03, 1);
    expect(figures.read.clatP99Us).toBeGreaterThan(figures.read.clatP50Us);
    expect(figures.mibPerSecond).toBeCloseTo(figures.read.mibPerSecond + figures.write.mibPerSecond, 6);
  });

  it("skips fio's notes before the document and refuses a failed job", () => {
    expect(parseFioJson(`fio: note: both iodepth >= 1 and synchronous I/O engine\n${captured}`).read.iops).toBeGreaterThan(0);
    const failed = JSON.stringify({ jobs: [{ jobname: "x", error: 5, read: {}, write: {} }] });
    expect(() => parseFioJson(failed)).toThrow(/failed with error 5/);
    expect(() => parseFioJson("fio: cannot open /dev/nope")).toThrow(/no JSON/);
  });
});

describe("fioCommand", () => {
  it("runs a time-based direct libaio job on the given byte range, with the mix only for randrw", () => {
    const mix = FIO_SHAPES.find((s) => s.rw === "randrw");
    if (!mix) throw new Error("no mixed shape");
    const command = fioCommand({ shape: mix, device: "/dev/loop7", offsetBytes: 16777216, sizeBytes: 1048576, runtimeSeconds: 3, rampSeconds: 1 });
    expect(command.file).toBe("fio");
    expect(command.args).toEqual(
      expect.arrayContaining(["--filename=/dev/loop7", "--direct=1", "--ioengine=libaio", "--iodepth=32", "--offset=16777216", "--rwmixread=70", "--runtime=3"]),
    );
    const read = FIO_SHAPES.find((s) => s.rw === "randread");
    if (!read) throw new Error("no randread shape");
    expect(fioCommand({ shape: read, device: "/dev/loop7", offsetBytes: 0, sizeBytes: 1, runtimeSeconds: 3, rampSeconds: 1 }).args.some((a) => a.startsWith("--rwmixread"))).toBe(false);
  });
});
