import { median, summarize, type Summary } from "../lib/stats.js";
import type { Table } from "../lib/table.js";
import type { CallBreakdown } from "./breakdown.js";
import { createVolume, removeVolume, stage, unstage, type Driver, type DriverName, type TimedCall } from "./drivers.js";

/**
 * Stage latency, cold (a new volume: format, mkfs, mount) and warm (a formatted volume: open,
 * mount), cloak against the plain baseline, through each plugin's gRPC NodeStageVolume with a
 * NodeUnstageVolume between samples. The two alternate which goes first in every round, so
 * that neither always runs on a warmer or quieter machine.
 */
export interface StageLatencyOptions {
  readonly drivers: readonly [Driver, Driver];
  readonly coldSamples: number;
  readonly warmSamples: number;
  readonly volumeBytes: number;
  readonly progress: (line: string) => void;
}

export interface StageSample {
  readonly stage: TimedCall;
  readonly unstage: TimedCall;
}

export type StageSamples = Record<"cold" | "warm", Record<DriverName, StageSample[]>>;

export async function measureStageLatency(options: StageLatencyOptions): Promise<{ samples: StageSamples; warmup: Record<DriverName, StageSample> }> {
  const { drivers, progress } = options;
  const samples: StageSamples = { cold: { cloak: [], plain: [] }, warm: { cloak: [], plain: [] } };
  const warmup = {} as Record<DriverName, StageSample>;

  // The first stage of a boot loads kernel modules (loop, dm-crypt and its ciphers, ext4) and
  // pages in every program: seconds that no later stage pays. Measured, reported, not counted.
  for (const driver of drivers) {
    await createVolume(driver, "warmup", options.volumeBytes);
    warmup[driver.name] = await stageCycle(driver, "warmup");
    await removeVolume(driver, "warmup");
    progress(`  warm-up ${driver.name}: stage ${warmup[driver.name].stage.clientMs.toFixed(0)} ms`);
  }

  for (let i = 1; i <= options.coldSamples; i++) {
    for (const driver of alternate(drivers, i)) {
      const id = `cold-${i}`;
      await createVolume(driver, id, options.volumeBytes);
      const sample = await stageCycle(driver, id);
      await removeVolume(driver, id);
      samples.cold[driver.name].push(sample);
      progress(`  cold ${i}/${options.coldSamples} ${driver.name}: ${sample.stage.clientMs.toFixed(0)} ms`);
    }
  }

  for (const driver of drivers) {
    await createVolume(driver, "warm", options.volumeBytes);
    await stageCycle(driver, "warm");
  }
  for (let i = 1; i <= options.warmSamples; i++) {
    for (const driver of alternate(drivers, i)) {
      const sample = await stageCycle(driver, "warm");
      samples.warm[driver.name].push(sample);
      progress(`  warm ${i}/${options.warmSamples} ${driver.name}: ${sample.stage.clientMs.toFixed(0)} ms`);
    }
  }
  for (const driver of drivers) await removeVolume(driver, "warm");
  return { samples, warmup };
}

async function stageCycle(driver: Driver, volumeId: string): Promise<StageSample> {
  const staged = await stage(driver, volumeId);
  const unstaged = await unstage(driver, volumeId);
  return { stage: staged, unstage: unstaged };
}

function alternate<T>(pair: readonly [T, T], round: number): readonly [T, T] {
  return round % 2 === 1 ? pair : [pair[1], pair[0]];
}

export interface StageSummary {
  readonly stage: Summary;
  readonly unstage: Summary;
  /** External commands per stage (median over samples). */
  readonly commandsPerStage: number;
}

export function summarizeStage(samples: readonly StageSample[]): StageSummary {
  return {
    stage: summarize(samples.map((s) => s.stage.clientMs)),
    unstage: summarize(samples.map((s) => s.unstage.clientMs)),
    commandsPerStage: median(samples.map((s) => s.stage.breakdown.commands.length)),
  };
}

/** Encrypted over plain, on medians. */
export function stageRatios(samples: StageSamples): { cold: number; warm: number } {
  const p50 = (list: readonly StageSample[]): number => median(list.map((s) => s.stage.clientMs));
  return { cold: p50(samples.cold.cloak) / p50(samples.cold.plain), warm: p50(samples.warm.cloak) / p50(samples.warm.plain) };
}

export function stageTable(samples: StageSamples, indicative: boolean): Table {
  const rows = (["cold", "warm"] as const).flatMap((kind) =>
    (["plain", "cloak"] as const).map((name) => {
      const s = summarizeStage(samples[kind][name]);
      return [`${kind}, ${name === "cloak" ? "encrypted (cloak)" : "plain"}`, s.stage.n, s.stage.p50, s.stage.p90, s.stage.min, s.stage.max, s.commandsPerStage, s.unstage.p50];
    }),
  );
  const ratios = stageRatios(samples);
  return {
    title: `NodeStageVolume latency over gRPC, ms${indicative ? " (VM tier: indicative)" : ""}`,
    columns: ["stage", "n", "p50", "p90", "min", "max", "commands", "unstage p50"],
    rows,
    notes: [`encrypted / plain, p50: cold ${ratios.cold.toFixed(2)}, warm ${ratios.warm.toFixed(2)}`],
  };
}

/**
 * Where a stage's time goes: for each external command, how many times one stage runs it and
 * its median time per stage; then the time in the handler outside commands, and in gRPC and
 * the client (client time − server time).
 */
export function breakdownTable(samples: StageSamples, indicative: boolean): Table {
  const columns = [["cold", "plain"], ["cold", "cloak"], ["warm", "plain"], ["warm", "cloak"]] as const;
  const lists = columns.map(([kind, name]) => samples[kind][name].map((s) => s.stage));
  const names = [...new Set(lists.flatMap((list) => list.flatMap((call) => call.breakdown.commands.map((c) => c.name))))];
  const perCommand = (list: readonly TimedCall[], name: string): [number, number] => {
    const mine = list.map((call) => call.breakdown.commands.filter((c) => c.name === name));
    return [median(mine.map((m) => m.length)), median(mine.map((m) => m.reduce((sum, c) => sum + c.ms, 0)))];
  };
  const metric = (list: readonly TimedCall[], f: (b: CallBreakdown, call: TimedCall) => number): [string, number] => ["", median(list.map((call) => f(call.breakdown, call)))];
  const rows = [
    ...names.map((name) => [name, ...lists.flatMap((list) => perCommand(list, name))]),
    ["in the handler, outside commands", ...lists.flatMap((list) => metric(list, (b) => b.outsideCommandsMs))],
    ["gRPC and client", ...lists.flatMap((list) => metric(list, (b, call) => call.clientMs - b.serverMs))],
    ["total (client)", ...lists.flatMap((list) => metric(list, (_, call) => call.clientMs))],
  ];
  return {
    title: `Where a stage's time goes: calls per stage and median ms per stage${indicative ? " (VM tier: indicative)" : ""}`,
    columns: ["command", ...columns.flatMap(([kind, name]) => [`${kind} ${name} #`, `${kind} ${name} ms`])],
    rows,
  };
}
