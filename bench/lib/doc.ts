import { isBenchResult, type BenchResult } from "./result.js";
import { renderMarkdown, type Table } from "./table.js";

/**
 * BENCHMARKS.md shows the latest table of each benchmark between markers,
 *   <!-- bench:NAME:begin --> ... <!-- bench:NAME:end -->
 * rewritten from the newest result file by `make bench-doc`. Everything outside the markers is
 * prose and stays as written.
 */
export function sectionNames(doc: string): string[] {
  return [...doc.matchAll(/<!-- bench:([a-z0-9-]+):begin -->/g)].map((m) => m[1] ?? "");
}

export function replaceSection(doc: string, name: string, content: string): string {
  const begin = `<!-- bench:${name}:begin -->`;
  const end = `<!-- bench:${name}:end -->`;
  const start = doc.indexOf(begin);
  const stop = doc.indexOf(end);
  if (start < 0 || stop < start) throw new Error(`BENCHMARKS.md has no complete section ${name}`);
  return `${doc.slice(0, start + begin.length)}\n${content.trim()}\n${doc.slice(stop)}`;
}

/** A result in the shared shape (bench/lib/result.ts), as markdown. */
export function renderResultMarkdown(result: BenchResult, file: string): string {
  const where =
    result.tier === "vm"
      ? `**VM tier (qemu TCG, emulated CPU): indicative figures.** Host ${result.machine.cpuModel}, ${result.machine.cpus} CPUs, ${result.machine.memoryMb} MB, kernel ${result.machine.kernel}; guest kernel ${result.guest?.kernel ?? "?"}, ${result.guest?.cpus ?? "?"} vCPUs, ${result.guest?.memoryMb ?? "?"} MB`
      : `${result.tier === "native" ? "Native (kernel with dm-crypt)" : "Host"}: ${result.machine.cpuModel}, ${result.machine.cpus} CPUs, ${result.machine.memoryMb} MB, kernel ${result.machine.kernel}`;
  const versions = Object.entries(result.versions).map(([tool, version]) => `${tool} ${version}`).join(", ");
  return [
    `Latest run: ${result.date} (\`${file}\`), ${Math.round(result.runtimeSeconds / 60)} min. ${where}. Load average at the end: ${result.machine.loadAverage.join(" ")}. ${versions}.`,
    "",
    ...result.tables.map(renderMarkdown),
    "**Targets**",
    "",
    ...result.targets.map((t) => `- ${t.what}: ${t.met ? "✅" : "❌"} ${t.text}`),
    "",
    ...(result.notes.length ? ["**Notes from the run**", "", ...result.notes.map((n) => `- ${n}`), ""] : []),
  ].join("\n");
}

/** The key service's result file, written before the shared shape existed (bench/keyservice/run.ts). */
interface KeyserviceResult {
  date: string;
  machine: { cpus: number; cpuModel?: string; memoryMb: number; kernel: string };
  versions: Record<string, string>;
  parameters: { rounds: number; durationMs: number };
  summary: { concurrency: number; baseline: KeyserviceFigures; cloak: KeyserviceFigures }[];
  targets: Record<string, { target: string; value: number; met: boolean }>;
  loadAverage?: number[];
}
interface KeyserviceFigures {
  perSecond: number;
  p50Ms: number;
  p99Ms: number;
  cpuUsPerCall: number;
}

function isKeyserviceResult(json: unknown): json is KeyserviceResult {
  const j = json as Partial<KeyserviceResult> | null;
  return typeof j === "object" && j !== null && Array.isArray(j.summary) && typeof j.targets === "object";
}

export function renderKeyserviceMarkdown(result: KeyserviceResult, file: string): string {
  const table: Table = {
    title: `GetDataKey over mutual TLS, cloak vs a bare grpc-js baseline (medians of ${result.parameters.rounds} rounds of ${result.parameters.durationMs / 1000} s)`,
    columns: ["callers", "server", "req/s", "p50 ms", "p99 ms", "server CPU µs/call"],
    rows: result.summary.flatMap((s) =>
      (["baseline", "cloak"] as const).map((name) => [s.concurrency, name, s[name].perSecond, s[name].p50Ms, s[name].p99Ms, s[name].cpuUsPerCall]),
    ),
  };
  const m = result.machine;
  return [
    `Latest run: ${result.date} (\`${file}\`). Host: ${m.cpuModel ?? "?"}, ${m.cpus} CPUs, ${m.memoryMb} MB, kernel ${m.kernel}` +
      `${result.loadAverage ? `; load average ${result.loadAverage.map((l) => l.toFixed(2)).join(" ")}` : ""}. ` +
      Object.entries(result.versions).map(([tool, version]) => `${tool} ${version}`).join(", ") + ".",
    "",
    renderMarkdown(table),
    "**Targets**",
    "",
    ...Object.entries(result.targets).map(([name, t]) => `- ${name}: ${t.met ? "✅ met" : "❌ MISSED"}: ${t.value} (target ${t.target})`),
    "",
  ].join("\n");
}

/** The markdown for a benchmark's section from its result JSON, whichever shape it has. */
export function renderAnyResult(json: unknown, file: string): string {
  if (isBenchResult(json)) return renderResultMarkdown(json, file);
  if (isKeyserviceResult(json)) return renderKeyserviceMarkdown(json, file);
  throw new Error(`${file} is not a benchmark result this tool knows how to show`);
}
