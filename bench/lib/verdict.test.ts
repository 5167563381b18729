import { describe, expect, it } from "vitest";
import { judge, type Target } from "./verdict.js";

const upper: Target = { id: "warm", what: "warm stage, encrypted / plain", op: "<=", bound: 1.15 };
const lower: Target = { id: "kdf", what: "pbkdf2 speed-up over argon2id", op: ">=", bound: 5, unit: "×" };

describe("judge", () => {
  it("meets an upper bound with headroom", () => {
    const v = judge(upper, 1.08);
    expect(v.met).toBe(true);
    expect(v.margin).toBeCloseTo(0.07);
    expect(v.text).toBe("met: 1.08 <= 1.15 (6.1 % headroom)");
  });

  it("says by how much an upper bound was missed", () => {
    const v = judge(upper, 3);
    expect(v.met).toBe(false);
    expect(v.margin).toBeCloseTo(-1.85);
    expect(v.marginPercent).toBeCloseTo(-160.87, 1);
    expect(v.text).toBe("MISSED by 1.85: 3.00 vs <= 1.15 (161 % over)");
  });

  it("treats the bound itself as met for <= and >=, missed for < and >", () => {
    expect(judge(upper, 1.15).met).toBe(true);
    expect(judge({ ...upper, op: "<" }, 1.15).met).toBe(false);
    expect(judge(lower, 5).met).toBe(true);
    expect(judge({ ...lower, op: ">" }, 5).met).toBe(false);
  });

  it("says how far short a lower bound fell, with the unit and the VM tag", () => {
    const v = judge({ ...lower, indicative: true }, 3.5);
    expect(v.met).toBe(false);
    expect(v.margin).toBeCloseTo(-1.5);
    expect(v.text).toBe("MISSED by 1.50 ×: 3.50 × vs >= 5.00 × (30.0 % short) [VM, indicative]");
  });

  it("never counts a value that was not measured as met", () => {
    const v = judge(lower, Number.NaN);
    expect(v.met).toBe(false);
    expect(v.text).toMatch(/^MISSED: not measured/);
  });
});
