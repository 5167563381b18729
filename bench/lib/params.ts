/** CLOAK_BENCH_* variables size the benchmarks (BENCHMARKS.md lists them). */
export function intFromEnv(name: string, fallback: number): number {
  const text = process.env[name];
  if (text === undefined || text === "") return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1) throw new Error(`${name} must be a positive integer, not ${JSON.stringify(text)}`);
  return value;
}

export function listFromEnv(name: string, fallback: readonly string[]): string[] {
  const text = process.env[name];
  if (text === undefined || text.trim() === "") return [...fallback];
  return text.split(",").map((s) => s.trim()).filter(Boolean);
}
