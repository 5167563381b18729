/**
 * Targets and the verdict on a measured value: met or missed, and by how much. The margin is
 * signed so that one number reads the same for every kind of bound: positive is headroom,
 * negative is how far the value fell on the wrong side.
 */
export type Comparison = "<=" | "<" | ">=" | ">";

export interface Target {
  /** Stable key in the JSON, e.g. "warmStageRatio". */
  readonly id: string;
  /** What is compared, for people: "warm stage, encrypted / plain". */
  readonly what: string;
  readonly op: Comparison;
  readonly bound: number;
  /** "×", "ms", "MB"; empty for a plain ratio. */
  readonly unit?: string;
  /** True when the value comes from an emulated CPU (the VM tier): a hint, not a measurement of hardware. */
  readonly indicative?: boolean;
}

export interface Verdict extends Target {
  readonly value: number;
  readonly met: boolean;
  /** Distance from the bound on the good side (negative: missed by that much). NaN when not measured. */
  readonly margin: number;
  /** The margin as a percentage of the bound. */
  readonly marginPercent: number;
  /** One line: "met: 1.08 <= 1.15 (6.1 % headroom)" or "MISSED by 1.85: 3.00 vs <= 1.15 (161 % over)". */
  readonly text: string;
}

export function judge(target: Target, value: number): Verdict {
  const { op, bound } = target;
  const unit = target.unit ? ` ${target.unit}` : "";
  const tag = target.indicative ? " [VM, indicative]" : "";
  if (!Number.isFinite(value)) {
    return { ...target, value, met: false, margin: Number.NaN, marginPercent: Number.NaN, text: `MISSED: not measured (target ${op} ${fmt(bound)}${unit})${tag}` };
  }
  const upper = op === "<=" || op === "<";
  const met = op === "<=" ? value <= bound : op === "<" ? value < bound : op === ">=" ? value >= bound : value > bound;
  const margin = upper ? bound - value : value - bound;
  const marginPercent = bound === 0 ? Number.NaN : (margin / Math.abs(bound)) * 100;
  const percent = Number.isFinite(marginPercent) ? ` (${fmt(Math.abs(marginPercent), 1)} % ${met ? "headroom" : upper ? "over" : "short"})` : "";
  const text = met
    ? `met: ${fmt(value)}${unit} ${op} ${fmt(bound)}${unit}${percent}${tag}`
    : `MISSED by ${fmt(Math.abs(margin))}${unit}: ${fmt(value)}${unit} vs ${op} ${fmt(bound)}${unit}${percent}${tag}`;
  return { ...target, value, met, margin, marginPercent, text };
}

function fmt(value: number, digits = 2): string {
  return value.toFixed(Math.abs(value) >= 100 ? 0 : digits);
}
