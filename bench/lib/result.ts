import { mkdir, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { packageRoot } from "../../lib/paths.js";
import type { Machine } from "./metadata.js";
import { renderText, type Table } from "./table.js";
import type { Verdict } from "./verdict.js";

/**
 * Where a figure was measured. "host": this machine's own kernel. "native" and "vm" are the
 * two modes of test/vm/run.sh: a kernel with dm-crypt and WireGuard (native), or Debian's
 * kernel under qemu TCG (vm), where the CPU is emulated and every figure is indicative.
 */
export type Tier = "host" | "native" | "vm";

/** The one JSON shape every benchmark writes under bench/results/ (schema 1). */
export interface BenchResult {
  readonly benchmark: string;
  readonly schema: 1;
  /** ISO 8601, when the run started. */
  readonly date: string;
  readonly tier: Tier;
  /** True for VM-tier figures: ratios hint at the real cost, absolute figures do not. */
  readonly indicative: boolean;
  /** The machine that ran the command (for the VM tier, the host that ran qemu). */
  readonly machine: Machine;
  /** The VM tier's guest: its kernel, its emulated CPU, its memory. */
  readonly guest?: Machine;
  readonly versions: Readonly<Record<string, string>>;
  readonly parameters: Readonly<Record<string, unknown>>;
  readonly runtimeSeconds: number;
  readonly tables: readonly Table[];
  readonly targets: readonly Verdict[];
  /** Explanations that belong with the figures (why a target was missed, what a baseline does). */
  readonly notes: readonly string[];
  /** Every sample, as measured. */
  readonly raw: unknown;
}

export function resultsDir(): string {
  return join(packageRoot(), "bench", "results");
}

/** The file name of a result: `<benchmark>-<date>.json`, dates made safe for file names. */
export function resultFileName(benchmark: string, date: string): string {
  if (!/^[a-z][a-z0-9-]*$/.test(benchmark)) throw new Error(`benchmark names are lowercase words with dashes, not ${JSON.stringify(benchmark)}`);
  return `${benchmark}-${date.replace(/[:.]/g, "-")}.json`;
}

/** Result files of one benchmark in `names`, oldest first (ISO dates sort as text). */
export function resultFilesOf(benchmark: string, names: readonly string[]): string[] {
  const pattern = new RegExp(`^${benchmark}-\\d{4}-\\d{2}-\\d{2}T[0-9-]+Z\\.json$`);
  return names.filter((name) => pattern.test(name)).sort();
}

/**
 * Writes the result and removes that benchmark's older results beyond `keep`: the directory is
 * committed, and only the latest runs are worth keeping there (git has the rest).
 */
export async function writeResult(result: BenchResult, options: { dir?: string; keep?: number } = {}): Promise<string> {
  const dir = options.dir ?? resultsDir();
  const keep = options.keep ?? 1;
  await mkdir(dir, { recursive: true });
  const file = join(dir, resultFileName(result.benchmark, result.date));
  await writeFile(file, `${JSON.stringify(result, null, 2)}\n`);
  const files = resultFilesOf(result.benchmark, await readdir(dir));
  for (const old of files.slice(0, Math.max(0, files.length - keep))) await rm(join(dir, old));
  return file;
}

/** The newest result file of a benchmark, parsed, or undefined when there is none. */
export async function latestResult(benchmark: string, dir = resultsDir()): Promise<{ file: string; json: unknown } | undefined> {
  const names = await readdir(dir).catch(() => [] as string[]);
  const newest = resultFilesOf(benchmark, names).at(-1);
  if (!newest) return undefined;
  const file = join(dir, newest);
  return { file, json: JSON.parse(await readFile(file, "utf8")) as unknown };
}

export function isBenchResult(json: unknown): json is BenchResult {
  return typeof json === "object" && json !== null && (json as { schema?: unknown }).schema === 1 && Array.isArray((json as { tables?: unknown }).tables);
}

/** The terminal report: every table, then one line per target. */
export function renderResult(result: BenchResult): string {
  const where =
    result.tier === "vm"
      ? `VM tier: qemu TCG on ${result.machine.cpuModel}, guest kernel ${result.guest?.kernel ?? "?"} — figures are indicative, not absolute`
      : `${result.tier === "native" ? "native (this kernel has dm-crypt)" : "host"}: ${result.machine.cpuModel}, kernel ${result.machine.kernel}`;
  return [
    `== ${result.benchmark}: ${result.date}, ${where}`,
    `   ${result.machine.cpus} CPUs, ${result.machine.memoryMb} MB, load average ${result.machine.loadAverage.join(" ")}; ` +
      Object.entries(result.versions)
        .map(([tool, version]) => `${tool} ${version}`)
        .join(", "),
    "",
    ...result.tables.map(renderText),
    "Targets:",
    ...result.targets.map((t) => `  ${t.what}: ${t.text}`),
    ...(result.notes.length ? ["", "Notes:", ...result.notes.map((n) => `  - ${n}`)] : []),
    `runtime ${Math.round(result.runtimeSeconds)} s`,
    "",
  ].join("\n");
}
