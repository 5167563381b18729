import { describe, expect, it } from "vitest";
import { headerCheckTable } from "./header-check.js";

describe("headerCheckTable", () => {
  it("shows medians per place and luksDump's cost over the in-process check", () => {
    const table = headerCheckTable(
      [
        ["guest (emulated CPU)", { luksDumpMs: [170, 160, 200], inProcessMs: [2, 4, 3] }],
        ["host (real CPU)", { luksDumpMs: [10, 9, 11], inProcessMs: [0.5, 0.4, 0.6] }],
      ],
      true,
    );
    expect(table.title).toMatch(/VM tier: indicative/);
    expect(table.rows).toEqual([
      ["guest (emulated CPU)", 3, 170, 3, 170 / 3],
      ["host (real CPU)", 3, 10, 0.5, 20],
    ]);
  });
});
