import { isBenchResult, type BenchResult } from "./result.js";
import { renderMarkdown } from "./table.js";

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

/** The markdown for a benchmark's section from its result JSON. */
export function renderAnyResult(json: unknown, file: string): string {
  if (isBenchResult(json)) return renderResultMarkdown(json, file);
  throw new Error(`${file} is not a benchmark result this tool knows how to show`);
}
