import { createHash } from "node:crypto";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { createRunner } from "../../lib/exec.js";
import { createLogger } from "../../lib/log.js";
import { packageRoot } from "../../lib/paths.js";
import { Daemon } from "../../test/netns/daemon.js";
import { connectCsi, type CsiClient } from "../../test/support/csi-client.js";
import { startPlugin, type RunningPlugin } from "../../test/support/csi-plugin.js";
import { median, summarize } from "../lib/stats.js";
import type { Table } from "../lib/table.js";
import { breakdownCall, type LogLine } from "./breakdown.js";

/**
 * Stage latency through the wrapper (csi/wrap/) against the same block driver used directly,
 * without encryption, in one run: the block test driver (test/blockdriver, bind profile: what
 * EBS, GCE PD and Azure Disk do for block) is asked for its disk the way kubelet asks it for a
 * raw block volume — NodeStageVolume, then NodePublishVolume to a file — and cloak in front of it
 * stages an ext4 volume (cold: a new disk, so format and mkfs; warm: open and mount) and a
 * block volume (warm: open only). Each cloak stage also counts the calls cloak made to the
 * inner driver and the commands it ran, from its own log.
 */
export interface WrapStageOptions {
  readonly root: string;
  readonly keyDir: string;
  readonly coldSamples: number;
  readonly warmSamples: number;
  readonly volumeBytes: number;
  readonly progress: (line: string) => void;
}

export type WrapCase = "cold, direct" | "cold, cloak mount" | "warm, direct" | "warm, cloak mount" | "warm, cloak block";

export interface WrapSample {
  readonly stageMs: number;
  readonly unstageMs: number;
  /** cloak's only. */
  readonly commands?: number;
  readonly innerCalls?: number;
}

export type WrapStageResult = Record<WrapCase, WrapSample[]>;

const MOUNT = { mount: { fs_type: "ext4", mount_flags: [] }, access_mode: { mode: "SINGLE_NODE_WRITER" as const } };
const BLOCK = { block: {}, access_mode: { mode: "SINGLE_NODE_WRITER" as const } };
const DRIVER = "bench.cloak.dev";

export async function measureWrapStage(options: WrapStageOptions): Promise<WrapStageResult> {
  const { root, progress } = options;
  const run = createRunner({ logger: createLogger({ component: "bench-wrap", level: "silent" }) });
  const binary = (await run({ file: join(packageRoot(), "test/blockdriver/build.sh"), args: ["--print-path"] })).stdout.trim();
  await mkdir(join(root, "state"), { recursive: true });
  const socket = join(root, "inner.sock");
  const driver = new Daemon({
    name: "blockdriver",
    argv: [binary, "--endpoint", `unix://${socket}`, "--node-id", "bench", "--state-dir", join(root, "state"), "--profile", "bind"],
    logFile: join(root, "blockdriver.log"),
  });
  let cloak: RunningPlugin | undefined;
  const inner = connectCsi(socket);
  try {
    await driver.waitForOutput((out) => out.includes("serving on"), 30_000);
    const kubelet = join(root, "cloak", "kubelet");
    const innerRoot = join(kubelet, "plugins", "kubernetes.io", "csi", DRIVER, "inner");
    cloak = await startPlugin({
      dir: join(root, "cloak"),
      keyDir: options.keyDir,
      args: ["--wrap", `unix://${socket}`, "--services", "node", "--driver-name", DRIVER, "--inner-root", innerRoot],
    });
    const bench = new WrapBench(inner, cloak, kubelet, join(root, "direct"));
    const result: WrapStageResult = { "cold, direct": [], "cold, cloak mount": [], "warm, direct": [], "warm, cloak mount": [], "warm, cloak block": [] };

    // Warm-up, not counted: the first stage of a boot loads modules and pages programs in.
    await bench.cloakCycle(await bench.newVolume(options.volumeBytes), MOUNT);
    await bench.directCycle(await bench.newVolume(options.volumeBytes));
    for (let i = 1; i <= options.coldSamples; i++) {
      const [direct, wrapped] = await Promise.all([bench.newVolume(options.volumeBytes), bench.newVolume(options.volumeBytes)]);
      // Alternating which goes first, so that neither always runs on a warmer machine.
      const pair = i % 2 === 1 ? [() => bench.directCycle(direct), () => bench.cloakCycle(wrapped, MOUNT)] : [() => bench.cloakCycle(wrapped, MOUNT), () => bench.directCycle(direct)];
      for (const sample of pair) {
        const s = await sample();
        result[s.commands === undefined ? "cold, direct" : "cold, cloak mount"].push(s);
      }
      progress(`  wrap cold ${i}/${options.coldSamples}: direct ${result["cold, direct"].at(-1)?.stageMs.toFixed(0)} ms, cloak ${result["cold, cloak mount"].at(-1)?.stageMs.toFixed(0)} ms`);
    }
    const [direct, mounted, block] = [await bench.newVolume(options.volumeBytes), await bench.newVolume(options.volumeBytes), await bench.newVolume(options.volumeBytes)];
    await bench.cloakCycle(mounted, MOUNT);
    await bench.cloakCycle(block, BLOCK);
    for (let i = 1; i <= options.warmSamples; i++) {
      result["warm, direct"].push(await bench.directCycle(direct));
      result["warm, cloak mount"].push(await bench.cloakCycle(mounted, MOUNT));
      result["warm, cloak block"].push(await bench.cloakCycle(block, BLOCK));
      progress(
        `  wrap warm ${i}/${options.warmSamples}: direct ${result["warm, direct"].at(-1)?.stageMs.toFixed(0)} ms, cloak mount ` +
          `${result["warm, cloak mount"].at(-1)?.stageMs.toFixed(0)} ms, block ${result["warm, cloak block"].at(-1)?.stageMs.toFixed(0)} ms`,
      );
    }
    return result;
  } finally {
    inner.close();
    await cloak?.stop();
    await driver.stop();
  }
}

class WrapBench {
  constructor(
    private readonly inner: CsiClient,
    private readonly cloak: RunningPlugin,
    private readonly kubelet: string,
    private readonly directDir: string,
  ) {}

  private names = 0;

  async newVolume(bytes: number): Promise<string> {
    const answer = await this.inner.controller("CreateVolume", {
      name: `bench-${++this.names}`,
      capacity_range: { required_bytes: String(bytes) },
      volume_capabilities: [BLOCK],
    });
    return answer.volume?.volume_id ?? "";
  }

  /** What kubelet does for a raw block volume of the driver itself: stage, publish to a file. */
  async directCycle(id: string): Promise<WrapSample> {
    const dir = join(this.directDir, hash(id));
    await mkdir(join(dir, "staging"), { recursive: true });
    const started = performance.now();
    await this.inner.node("NodeStageVolume", { volume_id: id, staging_target_path: join(dir, "staging"), volume_capability: BLOCK }, { timeoutMs: 600_000 });
    await this.inner.node("NodePublishVolume", {
      volume_id: id,
      staging_target_path: join(dir, "staging"),
      target_path: join(dir, "device"),
      volume_capability: BLOCK,
    });
    const stageMs = performance.now() - started;
    const unstarted = performance.now();
    await this.inner.node("NodeUnpublishVolume", { volume_id: id, target_path: join(dir, "device") });
    await this.inner.node("NodeUnstageVolume", { volume_id: id, staging_target_path: join(dir, "staging") });
    return { stageMs, unstageMs: performance.now() - unstarted };
  }

  /** NodeStageVolume through cloak, with what it cost, read from cloak's log; then NodeUnstageVolume. */
  async cloakCycle(id: string, capability: object): Promise<WrapSample> {
    const staging = join(this.kubelet, "plugins", "kubernetes.io", "csi", DRIVER, hash(id), "globalmount");
    await mkdir(staging, { recursive: true });
    const logs = this.cloak.logs as LogLine[];
    const from = logs.length;
    const started = performance.now();
    await this.cloak.client.node("NodeStageVolume", { volume_id: id, staging_target_path: staging, volume_capability: capability }, { timeoutMs: 600_000 });
    const stageMs = performance.now() - started;
    const breakdown = await waitForBreakdown(logs, from, id);
    const innerCalls = countInner(logs, from, id);
    const unstarted = performance.now();
    await this.cloak.client.node("NodeUnstageVolume", { volume_id: id, staging_target_path: staging }, { timeoutMs: 600_000 });
    return { stageMs, unstageMs: performance.now() - unstarted, commands: breakdown.commands.length, innerCalls };
  }
}

function hash(id: string): string {
  return createHash("sha256").update(id).digest("hex").slice(0, 16);
}

async function waitForBreakdown(logs: readonly LogLine[], from: number, id: string) {
  for (let i = 0; i < 500; i++) {
    const found = breakdownCall(logs, from, "NodeStageVolume", id);
    if (found) return found;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`no log line for cloak's NodeStageVolume of ${id}`);
}

/** Inner calls logged between `from` and the stage's "call" line (calls are made one at a time). */
function countInner(logs: readonly LogLine[], from: number, id: string): number {
  let count = 0;
  for (const line of logs.slice(from)) {
    if (line["msg"] === "inner call") count++;
    if (line["msg"] === "call" && String(line["method"]).endsWith("/NodeStageVolume") && line["volume_id"] === id) return count;
  }
  return count;
}

export function wrapStageTable(result: WrapStageResult, indicative: boolean): Table {
  const rows = (Object.keys(result) as WrapCase[]).map((name) => {
    const samples = result[name];
    const s = summarize(samples.map((x) => x.stageMs));
    const cloak = samples[0]?.commands !== undefined;
    return [
      name,
      s.n,
      s.p50,
      s.p90,
      s.min,
      s.max,
      cloak ? median(samples.map((x) => x.innerCalls ?? 0)) : 2,
      cloak ? median(samples.map((x) => x.commands ?? 0)) : "–",
      median(samples.map((x) => x.unstageMs)),
    ];
  });
  const ratio = wrapRatios(result);
  return {
    title: `Stage through the wrapper vs the block driver alone, ms${indicative ? " (VM tier: indicative)" : ""}`,
    columns: ["case", "n", "p50", "p90", "min", "max", "inner calls", "commands", "unstage p50"],
    rows,
    notes: [
      "direct: the block test driver's NodeStageVolume + NodePublishVolume of a raw block volume (what kubelet calls), no encryption; " +
        "cloak: its NodeStageVolume in front of the same driver (inner stage + publish, LUKS2, and for mount mkfs/mount).",
      `cloak / direct, p50: cold mount ${ratio.coldMount.toFixed(2)}, warm mount ${ratio.warmMount.toFixed(2)}, warm block ${ratio.warmBlock.toFixed(2)}`,
    ],
  };
}

export function wrapRatios(result: WrapStageResult): { coldMount: number; warmMount: number; warmBlock: number } {
  const p50 = (name: WrapCase): number => median(result[name].map((s) => s.stageMs));
  return {
    coldMount: p50("cold, cloak mount") / p50("cold, direct"),
    warmMount: p50("warm, cloak mount") / p50("warm, direct"),
    warmBlock: p50("warm, cloak block") / p50("warm, direct"),
  };
}
