import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { isBenchResult, latestResult, resultFileName, resultFilesOf, writeResult, type BenchResult } from "./result.js";

const result = (date: string): BenchResult => ({
  benchmark: "storage",
  schema: 1,
  date,
  tier: "vm",
  indicative: true,
  machine: { hostname: "h", cpuModel: "cpu", cpus: 2, memoryMb: 1024, kernel: "6.1", loadAverage: [1, 1, 1] },
  versions: { node: "v24" },
  parameters: {},
  runtimeSeconds: 1,
  tables: [],
  targets: [],
  notes: [],
  raw: {},
});

describe("result files", () => {
  let dir = "";
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "cloak-bench-result-"));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("names files by benchmark and date, safe for any file system", () => {
    expect(resultFileName("storage", "2026-11-25T09:43:14.880Z")).toBe("storage-2026-11-25T09-43-14-880Z.json");
    expect(() => resultFileName("../x", "2026-11-25T09:43:14.880Z")).toThrow();
  });

  it("tells one benchmark's files from another's whose name starts the same", () => {
    const names = ["netd-2026-01-02T00-00-00-000Z.json", "netd-dataplane-2026-01-01T00-00-00-000Z.json", "netd-2026-01-01T00-00-00-000Z.json", "tmp"];
    expect(resultFilesOf("netd", names)).toEqual(["netd-2026-01-01T00-00-00-000Z.json", "netd-2026-01-02T00-00-00-000Z.json"]);
  });

  it("keeps only the newest results of the benchmark written, and no other benchmark's", async () => {
    await writeFile(join(dir, "keyservice-2020-01-01T00-00-00-000Z.json"), "{}");
    await writeResult(result("2026-01-01T00:00:00.000Z"), { dir });
    await writeResult(result("2026-01-03T00:00:00.000Z"), { dir });
    await writeResult(result("2026-01-02T00:00:00.000Z"), { dir, keep: 2 });
    expect((await readdir(dir)).sort()).toEqual([
      "keyservice-2020-01-01T00-00-00-000Z.json",
      "storage-2026-01-02T00-00-00-000Z.json",
      "storage-2026-01-03T00-00-00-000Z.json",
    ]);
    const latest = await latestResult("storage", dir);
    expect(latest?.file).toBe(join(dir, "storage-2026-01-03T00-00-00-000Z.json"));
    expect(isBenchResult(latest?.json)).toBe(true);
    expect(isBenchResult({})).toBe(false);
    expect(await latestResult("netd", dir)).toBeUndefined();
  });
});
