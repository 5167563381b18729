import { readdir } from "node:fs/promises";
import { median, summarize, type Summary } from "../lib/stats.js";
import type { Table } from "../lib/table.js";
import { createVolume, removeVolume, stage, unstage, type Driver } from "./drivers.js";

/**
 * Many volumes on one node: `count` new volumes staged back to back through cloak's plugin
 * (each a cold stage: format, mkfs, mount) with all of them left staged, then all unstaged.
 * Shows the per-volume cost and whether it grows with the number of open mappings and mounts.
 */
export interface ManyVolumesResult {
  readonly count: number;
  readonly stageMs: number[];
  readonly unstageMs: number[];
  readonly stageTotalMs: number;
  readonly unstageTotalMs: number;
  /** Mappings named cloak-many-* seen in /dev/mapper with every volume staged. */
  readonly openMappings: number;
}

export async function measureManyVolumes(options: { cloak: Driver; count: number; volumeBytes: number; progress: (line: string) => void }): Promise<ManyVolumesResult> {
  const { cloak, count, progress } = options;
  const ids = Array.from({ length: count }, (_, i) => `many-${String(i + 1).padStart(3, "0")}`);
  for (const id of ids) await createVolume(cloak, id, options.volumeBytes);
  const stageMs: number[] = [];
  const unstageMs: number[] = [];
  const started = performance.now();
  for (const id of ids) {
    stageMs.push((await stage(cloak, id)).clientMs);
    if (stageMs.length % 10 === 0) progress(`  staged ${stageMs.length}/${count}, last ${stageMs.at(-1)?.toFixed(0)} ms`);
  }
  const stageTotalMs = performance.now() - started;
  const openMappings = (await readdir("/dev/mapper")).filter((name) => name.startsWith("cloak-many-")).length;
  const unstageStarted = performance.now();
  for (const id of ids) unstageMs.push((await unstage(cloak, id)).clientMs);
  const unstageTotalMs = performance.now() - unstageStarted;
  for (const id of ids) await removeVolume(cloak, id);
  if (openMappings !== count) throw new Error(`${count} volumes were staged but ${openMappings} cloak-many-* mappings were open`);
  return { count, stageMs, unstageMs, stageTotalMs, unstageTotalMs, openMappings };
}

export function manyVolumesTable(result: ManyVolumesResult, indicative: boolean): Table {
  const stage: Summary = summarize(result.stageMs);
  const unstage: Summary = summarize(result.unstageMs);
  const tenth = Math.max(1, Math.floor(result.count / 5));
  const first = median(result.stageMs.slice(0, tenth));
  const last = median(result.stageMs.slice(-tenth));
  return {
    title: `${result.count} volumes staged back to back (cold: format + mkfs + mount), cloak, ms${indicative ? " (VM tier: indicative)" : ""}`,
    columns: ["operation", "total s", "p50", "p99", "min", "max"],
    rows: [
      ["NodeStageVolume", result.stageTotalMs / 1000, stage.p50, stage.p99, stage.min, stage.max],
      ["NodeUnstageVolume", result.unstageTotalMs / 1000, unstage.p50, unstage.p99, unstage.min, unstage.max],
    ],
    notes: [
      `stage p50 of the first ${tenth}: ${first.toFixed(0)} ms, of the last ${tenth} (with ${result.count - tenth} already open): ${last.toFixed(0)} ms (${(last / first).toFixed(2)}×)`,
      `${result.openMappings} mappings open with all volumes staged`,
    ],
  };
}
