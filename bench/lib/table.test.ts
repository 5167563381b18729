import { describe, expect, it } from "vitest";
import { formatCell, renderMarkdown, renderText, type Table } from "./table.js";

const table: Table = {
  title: "Stage latency (ms)",
  columns: ["case", "p50", "p90"],
  rows: [
    ["warm plain", 812.25, 900],
    ["warm encrypted", 2014.5, 2400.75],
  ],
  notes: ["ratio 2.48 | VM"],
};

describe("formatCell", () => {
  it("keeps integers, trims decimals of large numbers and shows non-finite values as a dash", () => {
    expect(formatCell(42)).toBe("42");
    expect(formatCell(3.14159)).toBe("3.14");
    expect(formatCell(123.456)).toBe("123.5");
    expect(formatCell(12345.6)).toBe("12346");
    expect(formatCell(Number.NaN)).toBe("–");
    expect(formatCell("text")).toBe("text");
  });
});

describe("renderText", () => {
  it("aligns columns, right-aligns numbers and prints the notes under the table", () => {
    expect(renderText(table)).toBe(
      [
        "Stage latency (ms)",
        "",
        "case            p50    p90",
        "--------------  -----  ----",
        "warm plain      812.3   900",
        "warm encrypted   2015  2401",
        "",
        "ratio 2.48 | VM",
        "",
      ].join("\n"),
    );
  });
});

describe("renderMarkdown", () => {
  it("writes a markdown table with numeric columns right-aligned and pipes escaped", () => {
    expect(renderMarkdown(table)).toBe(
      [
        "**Stage latency (ms)**",
        "",
        "| case | p50 | p90 |",
        "| --- | ---: | ---: |",
        "| warm plain | 812.3 | 900 |",
        "| warm encrypted | 2015 | 2401 |",
        "",
        "- ratio 2.48 \\| VM",
        "",
      ].join("\n"),
    );
  });
});
