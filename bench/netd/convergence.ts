import { generateKeyPair } from "../../netd/keys.js";
import type { Daemon } from "../../test/netns/daemon.js";
import type { TestNode } from "../../test/netns/testbed.js";
import { startEnv, type BenchEnv } from "./env.js";
import { LogFollower } from "./log-follower.js";
import { commandMsBetween, commandsBetween, isReconcileEnd, peerSetAt, type LogEntry } from "./netd-log.js";
import { exeName, procStats, type ProcStats } from "../lib/proc-stats.js";
import { createSyntheticNodes, syntheticName, syntheticNode, syntheticPodCIDRs, type SyntheticNodeOptions } from "./synthetic-nodes.js";

/**
 * Convergence at scale: one netd (wireguard-go on the host kernel) against a real API server
 * holding N Node objects, each with a key, an InternalIP and pod CIDRs. Per size:
 *   - full program: from netd's process start (interface absent) to the reconcile that has
 *     every peer and route in place ("applied changes" with N-1 peers), repeated;
 *   - restart: the same with the interface left in place (nothing to change);
 *   - one added node: from the create request to the `wg set` that adds its peer (it is in
 *     `wg show` from then on) and to the end of that reconcile (routes in place too), with the
 *     wg/ip/nft commands the change cost; and one removed node the same way;
 *   - netd's peak RSS (VmHWM) and CPU seconds.
 * Times come from netd's own debug log (each command is logged when it exits) on the same
 * clock as the benchmark; the result is then checked against `wg show` and `ip route`.
 */

export interface ConvergenceOptions {
  readonly sizes: readonly number[];
  readonly startSamples: number;
  readonly changeSamples: number;
  readonly dualStack: boolean;
  readonly createConcurrency: number;
  readonly progress: (line: string) => void;
}

export interface StartSample {
  /** Process start → the reconcile that programmed everything (or found it in sync), ms. */
  readonly toProgrammedMs: number;
  /** Process start → netd's first log line (Node start-up and module loading), ms. */
  readonly toFirstLogMs: number;
  /** The programming reconcile's commands, by program, and their summed duration. */
  readonly commands: Record<string, number>;
  readonly commandMs: number;
  readonly peersChanged: number;
  readonly routesChanged: number;
  /** netd right after programming. */
  readonly proc: ProcStats;
}

export interface ChangeSample {
  /** Create (or delete) request sent → its `wg set` done (in `wg show` from then on), ms. */
  readonly toWgMs: number;
  /** Request sent → the end of the reconcile (routes too), ms. */
  readonly toProgrammedMs: number;
  /** How long the API request itself took, ms. */
  readonly requestMs: number;
  /** Every command netd ran between the request and the end of the reconcile. */
  readonly commands: Record<string, number>;
  readonly commandMs: number;
  /** Reconciles that ended in that window (1 when the change is applied in one pass). */
  readonly reconciles: number;
}

export interface SizeResult {
  readonly nodes: number;
  readonly peers: number;
  readonly routes: number;
  readonly start: StartSample[];
  readonly restart: StartSample[];
  readonly added: ChangeSample[];
  readonly removed: ChangeSample[];
  /** netd at the end of this size's runs: its highest peak RSS and CPU of the last run. */
  readonly peakRssMb: number;
  readonly lastRun: ProcStats;
  /** wireguard-go's RSS with every peer configured (context: it is not netd's). */
  readonly wireguardGoRssMb: number | undefined;
  /** Seconds to create this size's missing Node objects (the API server's share, not netd's). */
  readonly createSeconds: number;
}

export interface ConvergenceResult {
  readonly sizes: SizeResult[];
  readonly nodeJsonBytes: number;
  readonly options: Omit<ConvergenceOptions, "progress">;
}

const ADDED_BASE = 15_000;

export async function measureConvergence(o: ConvergenceOptions): Promise<ConvergenceResult> {
  const env = await startEnv({
    nodes: 1,
    implementation: "userspace",
    // No periodic resync during the measurement: every reconcile is one the benchmark caused.
    flags: ["--endpoint-family=ipv4", "--resync-interval=3600"],
  });
  try {
    const n1 = env.tb.nodes[0] as TestNode;
    await env.cluster.createNode(n1);
    const sizes: SizeResult[] = [];
    let have = 0;
    for (const size of [...o.sizes].sort((a, b) => a - b)) {
      const created = performance.now();
      o.progress(`convergence: ${size} nodes: creating ${size - 1 - have} Node objects`);
      await createSyntheticNodes(env.cluster.core, have, size - 1, { dualStack: o.dualStack, concurrency: o.createConcurrency });
      have = size - 1;
      const createSeconds = (performance.now() - created) / 1000;
      sizes.push({ ...(await measureSize(env, n1, size, o)), createSeconds });
    }
    return {
      sizes,
      nodeJsonBytes: JSON.stringify(syntheticNode(0, generateKeyPair().publicKey, o)).length,
      options: { sizes: o.sizes, startSamples: o.startSamples, changeSamples: o.changeSamples, dualStack: o.dualStack, createConcurrency: o.createConcurrency },
    };
  } finally {
    await env.close();
  }
}

async function measureSize(env: BenchEnv, n1: TestNode, size: number, o: ConvergenceOptions): Promise<Omit<SizeResult, "createSeconds">> {
  const { cluster } = env;
  const opts: SyntheticNodeOptions = { dualStack: o.dualStack };
  const peers = size - 1;
  const routesPerPeer = o.dualStack ? 2 : 1;
  const start: StartSample[] = [];
  const restart: StartSample[] = [];
  const added: ChangeSample[] = [];
  const removed: ChangeSample[] = [];
  let peakRssMb = 0;
  let lastRun: ProcStats | undefined;
  let wireguardGoRssMb: number | undefined;

  const logFile = () => (cluster.netd(n1)?.o.logFile ?? "");
  const run = async (fresh: boolean): Promise<{ daemon: Daemon; log: LogFollower; sample: StartSample }> => {
    if (fresh) await removeInterface(env, n1);
    const t0 = Date.now();
    const daemon = await cluster.startNetd(n1);
    const log = new LogFollower(logFile());
    const alive = () => daemon.running;
    const first = await log.waitFor(() => true, { from: t0, timeoutMs: 60_000, what: "netd's first log line", alive });
    const done = await log.waitFor((e) => isReconcileEnd(e) && e.peers === peers, {
      from: t0,
      timeoutMs: 120_000,
      what: `a reconcile with ${peers} peers`,
      alive,
    });
    const proc = await procStats(daemon.pid);
    // The reconcile that programmed everything began after the previous one ended (or at start).
    const previousEnd = [...log.entries].filter((e) => e.time >= t0 && e.time < done.time && isReconcileEnd(e)).pop()?.time ?? t0;
    const sample: StartSample = {
      toProgrammedMs: done.time - t0,
      toFirstLogMs: first.time - t0,
      commands: commandsBetween(log.entries, previousEnd, done.time),
      commandMs: commandMsBetween(log.entries, previousEnd, done.time),
      peersChanged: done.peersChanged ?? Number.NaN,
      routesChanged: done.routesChanged ?? Number.NaN,
      proc,
    };
    // netd publishes its own key after the first program, which is one more event; let the
    // reconciles that follow finish before anything is measured against this run.
    await log.waitQuiet(1_000, 60_000);
    return { daemon, log, sample };
  };
  const finish = async (daemon: Daemon) => {
    const proc = await procStats(daemon.pid);
    peakRssMb = Math.max(peakRssMb, proc.peakRssMb);
    lastRun = proc;
    await cluster.stopNetd(n1, "SIGTERM");
  };

  for (let s = 0; s < o.startSamples; s++) {
    const { daemon, sample } = await run(true);
    if ((await exeName(daemon.pid)) !== "node") throw new Error(`pid ${daemon.pid} is not netd's Node process: /proc figures would be someone else's`);
    if (sample.peersChanged !== peers || sample.routesChanged !== peers * routesPerPeer) {
      throw new Error(`netd's first program at ${size} nodes changed ${sample.peersChanged} peers and ${sample.routesChanged} routes, expected ${peers} and ${peers * routesPerPeer}`);
    }
    start.push(sample);
    o.progress(`convergence: ${size} nodes: full program ${sample.toProgrammedMs} ms (${s + 1}/${o.startSamples})`);
    if (s === o.startSamples - 1) {
      await checkProgrammed(env, n1, peers, peers * routesPerPeer);
      wireguardGoRssMb = await wireguardGoRss(env, n1);
    }
    await finish(daemon);
  }

  // Restarts: the interface keeps everything; netd must find nothing to change.
  for (let s = 0; s < o.startSamples; s++) {
    const { daemon, sample } = await run(false);
    if (sample.peersChanged !== 0 || sample.routesChanged !== 0) throw new Error(`a restart at ${size} nodes changed ${sample.peersChanged} peers, ${sample.routesChanged} routes`);
    restart.push(sample);
    await finish(daemon);
  }

  // One node added, then removed, `changeSamples` times, with netd running throughout.
  const { daemon, log } = await run(false);
  for (let s = 0; s < o.changeSamples; s++) {
    const index = ADDED_BASE + s;
    const { publicKey } = generateKeyPair();
    await log.waitQuiet(500, 30_000);
    let t0 = Date.now();
    await cluster.core.createNode({ body: syntheticNode(index, publicKey, opts) });
    let requestMs = Date.now() - t0;
    let done = await log.waitFor((e) => e.msg === "applied changes" && e.peers === peers + 1, { from: t0, timeoutMs: 60_000, what: `peer ${syntheticName(index)} added`, alive: () => daemon.running });
    let set = peerSetAt(log.entries, t0, publicKey);
    if (!set) throw new Error(`no wg set for the added node ${syntheticName(index)}`);
    added.push(changeSample(log.entries, t0, requestMs, set, done));
    const device = await cluster.device(n1);
    const peer = device.peers.find((p) => p.publicKey === publicKey);
    if (!peer || [...peer.allowedIPs].sort().join() !== syntheticPodCIDRs(index, opts).sort().join()) {
      throw new Error(`wg show lacks the added node ${syntheticName(index)} with its pod CIDRs`);
    }

    await log.waitQuiet(500, 30_000);
    t0 = Date.now();
    await cluster.core.deleteNode({ name: syntheticName(index) });
    requestMs = Date.now() - t0;
    done = await log.waitFor((e) => e.msg === "applied changes" && e.peers === peers, { from: t0, timeoutMs: 60_000, what: `peer ${syntheticName(index)} removed`, alive: () => daemon.running });
    set = [...log.entries].find((e) => e.time >= t0 && e.cmd?.startsWith("wg set ") === true && e.cmd.includes(` peer ${publicKey} remove`));
    if (!set) throw new Error(`no wg set removing the deleted node ${syntheticName(index)}`);
    removed.push(changeSample(log.entries, t0, requestMs, set, done));
    o.progress(`convergence: ${size} nodes: node added ${added.at(-1)?.toWgMs} ms, removed ${removed.at(-1)?.toWgMs} ms (${s + 1}/${o.changeSamples})`);
  }
  await finish(daemon);
  if (!lastRun) throw new Error("no netd run was measured");
  return { nodes: size, peers, routes: peers * routesPerPeer, start, restart, added, removed, peakRssMb, lastRun, wireguardGoRssMb };
}

function changeSample(entries: readonly LogEntry[], t0: number, requestMs: number, set: LogEntry, done: LogEntry): ChangeSample {
  return {
    toWgMs: set.time - t0,
    toProgrammedMs: done.time - t0,
    requestMs,
    commands: commandsBetween(entries, t0, done.time),
    commandMs: commandMsBetween(entries, t0, done.time),
    reconciles: entries.filter((e) => e.time >= t0 && e.time <= done.time && isReconcileEnd(e)).length,
  };
}

/** Deletes netd's interface (its routes go with it) so that the next start programs from nothing. */
async function removeInterface(env: BenchEnv, node: TestNode): Promise<void> {
  const iface = env.cluster.iface(node);
  await env.tb.exec(node.ns, ["ip", "link", "del", iface], { okExitCodes: [1] });
  // wireguard-go notices its TUN is gone and exits, removing its socket.
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const pids = (await env.tb.exec(node.ns, ["ip", "netns", "pids", node.ns], { okExitCodes: [1] }).catch(() => ({ stdout: "" }))).stdout;
    const names = await Promise.all(pids.split(/\s+/).filter(Boolean).map((p) => exeName(Number(p)).catch(() => "")));
    if (!names.includes("wireguard-go")) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`wireguard-go for ${iface} did not exit after its interface was deleted`);
}

async function wireguardGoRss(env: BenchEnv, node: TestNode): Promise<number | undefined> {
  const pids = (await env.tb.exec(node.ns, ["ip", "netns", "pids", node.ns])).stdout.split(/\s+/).filter(Boolean).map(Number);
  for (const pid of pids) {
    if ((await exeName(pid).catch(() => "")) === "wireguard-go") return (await procStats(pid)).rssMb;
  }
  return undefined;
}

/** The live state matches: every peer in `wg show`, every route in netd's table. */
async function checkProgrammed(env: BenchEnv, node: TestNode, peers: number, routes: number): Promise<void> {
  const device = await env.cluster.device(node);
  const live = await env.cluster.routes(node);
  if (device.peers.length !== peers || live.length !== routes) {
    throw new Error(`after the first program: ${device.peers.length} peers and ${live.length} routes live, expected ${peers} and ${routes}`);
  }
}

