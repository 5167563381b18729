import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { renderAnyResult, replaceSection, sectionNames } from "./doc.js";
import type { BenchResult } from "./result.js";
import { judge } from "./verdict.js";

const doc = `# Benchmarks

prose

<!-- bench:storage:begin -->
old table
<!-- bench:storage:end -->

more prose

<!-- bench:netd:begin -->
_not yet_
<!-- bench:netd:end -->
`;

describe("BENCHMARKS.md sections", () => {
  it("finds the marked sections and replaces one without touching the prose", () => {
    expect(sectionNames(doc)).toEqual(["storage", "netd"]);
    const updated = replaceSection(doc, "storage", "new table\n");
    expect(updated).toContain("<!-- bench:storage:begin -->\nnew table\n<!-- bench:storage:end -->");
    expect(updated).not.toContain("old table");
    expect(updated).toContain("prose\n\n<!-- bench:storage:begin -->");
    expect(updated).toContain("<!-- bench:netd:begin -->\n_not yet_\n<!-- bench:netd:end -->");
    expect(replaceSection(updated, "storage", "new table")).toBe(updated);
  });

  it("refuses a section that is not there", () => {
    expect(() => replaceSection(doc, "keyservice", "x")).toThrow(/no complete section keyservice/);
  });
});

describe("renderAnyResult", () => {
  it("shows a shared-shape result with the VM tier marked indicative and every target", () => {
    const result: BenchResult = {
      benchmark: "storage",
      schema: 1,
      date: "2026-01-01T00:00:00.000Z",
      tier: "vm",
      indicative: true,
      machine: { hostname: "h", cpuModel: "AMD EPYC", cpus: 2, memoryMb: 24000, kernel: "6.18", loadAverage: [2, 2, 2] },
      guest: { hostname: "g", cpuModel: "QEMU TCG CPU", cpus: 2, memoryMb: 3000, kernel: "6.1.0", loadAverage: [1, 1, 1] },
      versions: { node: "v24", cryptsetup: "2.6.1" },
      parameters: {},
      runtimeSeconds: 600,
      tables: [{ title: "t", columns: ["a", "b"], rows: [["x", 1.5]] }],
      targets: [judge({ id: "w", what: "warm ratio", op: "<=", bound: 1.15, indicative: true }, 2)],
      notes: ["why"],
      raw: {},
    };
    const md = renderAnyResult(result, "bench/results/storage-x.json");
    expect(md).toContain("**VM tier (qemu TCG, emulated CPU): indicative figures.**");
    expect(md).toContain("| x | 1.50 |");
    expect(md).toContain("- warm ratio: ❌ MISSED by 0.85");
    expect(md).toContain("- why");
  });

  it("shows the key service's own result file (a copy of a real one)", () => {
    const file = join(import.meta.dirname, "testdata", "keyservice-result.json");
    const md = renderAnyResult(JSON.parse(readFileSync(file, "utf8")) as unknown, "keyservice.json");
    expect(md).toMatch(/\| 64 \| cloak \| \d+ \|/);
    expect(md).toMatch(/- throughput at 64 callers, cloak \/ baseline: (✅ met|❌ MISSED)/);
  });

  it("refuses JSON it does not know", () => {
    expect(() => renderAnyResult({ hello: 1 }, "x.json")).toThrow(/not a benchmark result/);
  });
});
