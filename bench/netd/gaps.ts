import { join } from "node:path";
import { packageRoot } from "../../lib/paths.js";
import { PUBLIC_KEY_ANNOTATION } from "../../netd/nodes.js";
import type { Daemon } from "../../test/netns/daemon.js";
import { waitFor } from "../../test/support/wait.js";
import type { TestNode } from "../../test/netns/testbed.js";
import { scaled } from "../../test/netns/timing.js";
import { startEcho, startProbe, type ProbeStats } from "../../test/netns/traffic.js";
import type { Mesh } from "./mesh.js";
import { firstAfter, parseNetdLog, peerSetAt, type LogEntry } from "./netd-log.js";
import { readFile } from "node:fs/promises";

/**
 * Connectivity gaps, measured as the host tier's scenarios measure them (test/netns: a UDP
 * datagram every 10 ms echoed back, and one TCP connection writing a line every 20 ms, both
 * pod n1 → pod n2 through netd's tunnel), repeated and alternating which node's netd is acted on:
 *   - restart: SIGKILL the netd (a crash, the harshest restart), start it again, wait until its
 *     first reconcile is done;
 *   - key rotation: `cloak netd rotate-key` on a node, until the other node uses the new key.
 * The gap is the probe's longest time without an echo (about 10 ms when nothing is lost).
 */

export interface GapOptions {
  readonly restarts: number;
  readonly rotations: number;
  readonly progress: (line: string) => void;
}

export interface RestartSample {
  readonly node: string;
  readonly udp: ProbeStats;
  readonly tcp: ProbeStats;
  /** From the new process's start to the end of its first reconcile, ms. */
  readonly restartToInSyncMs: number;
  /** What that reconcile found to change: 0 peers, 0 routes expected. */
  readonly peersChanged: number | undefined;
}

export interface RotationSample {
  readonly node: string;
  readonly udp: ProbeStats;
  readonly tcp: ProbeStats;
  /** From `rotate-key` starting to the other node using the new key (polled), ms. */
  readonly rotateToPeerMs: number;
  /** Where the time went, from both netds' logs (ms after the rotating netd logged the new key). */
  readonly timeline: RotationTimeline | undefined;
}

export interface RotationTimeline {
  /** The Node patch with the new public key returned. */
  readonly publishedMs: number;
  /** The rotating node's interface switched to the new key (its `wg set private-key` exited). */
  readonly switchedMs: number;
  /** The other node's `wg set` naming the new key exited: from then on it answers the handshake. */
  readonly peerSetMs: number;
}

/** The rotation's moments from both logs; undefined when a line is missing (an older netd). */
export function rotationTimeline(rotating: readonly LogEntry[], other: readonly LogEntry[], from: number, publicKey: string): RotationTimeline | undefined {
  const rotated = firstAfter(rotating, from, (e) => e.msg === "rotated private key");
  if (!rotated) return undefined;
  const published = firstAfter(rotating, rotated.time, (e) => e.msg === "published public key on the Node");
  const switched = firstAfter(rotating, rotated.time, (e) => e.msg === "switched the interface to the new key");
  const peer = peerSetAt(other, rotated.time, publicKey);
  if (!published || !switched || !peer) return undefined;
  return { publishedMs: published.time - rotated.time, switchedMs: switched.time - rotated.time, peerSetMs: peer.time - rotated.time };
}

export interface GapResult {
  readonly probeIntervalMs: { udp: number; tcp: number };
  readonly restarts: RestartSample[];
  readonly rotations: RotationSample[];
}

const UDP_ECHO = 7777;
const TCP_ECHO = 7778;
const UDP_INTERVAL_MS = 10;
const TCP_INTERVAL_MS = 20;

export async function measureGaps(mesh: Mesh, o: GapOptions): Promise<GapResult> {
  const { env, n1, n2 } = mesh;
  const { cluster, dir } = env;
  const echoes: Daemon[] = [await startEcho(n2.podNs, "udp", UDP_ECHO, dir), await startEcho(n2.podNs, "tcp", TCP_ECHO, dir)];
  const probes = async () => ({
    udp: await startProbe(n1.podNs, "udp-probe", n2.podIP4, UDP_ECHO, UDP_INTERVAL_MS, dir),
    tcp: await startProbe(n1.podNs, "tcp-stream", n2.podIP4, TCP_ECHO, TCP_INTERVAL_MS, dir),
  });
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  try {
    const restarts: RestartSample[] = [];
    for (let i = 0; i < o.restarts; i++) {
      const node = i % 2 === 0 ? n2 : n1;
      const p = await probes();
      await sleep(500);
      await cluster.stopNetd(node, "SIGKILL");
      await sleep(1_000);
      const started = Date.now();
      const d = await cluster.startNetd(node);
      await d.waitForOutput((out) => /"msg":"(in sync|applied changes)"/.test(out), scaled(30_000));
      const restartToInSyncMs = Date.now() - started;
      const first = /"peersChanged":(\d+)[^\n]*"msg":"(?:in sync|applied changes)"/.exec(d.stdout);
      await sleep(1_000);
      const udp = await p.udp.stop();
      const tcp = await p.tcp.stop();
      restarts.push({ node: node.name, udp, tcp, restartToInSyncMs, peersChanged: first?.[1] === undefined ? undefined : Number(first[1]) });
      o.progress(`gaps: restart of ${node.name}'s netd: UDP gap ${udp.maxGapMs} ms, ${udp.lost} of ${udp.sent} lost; TCP gap ${tcp.maxGapMs} ms${tcp.closed ? ", connection dropped" : ""}`);
    }

    const rotations: RotationSample[] = [];
    for (let i = 0; i < o.rotations; i++) {
      const node = i % 2 === 0 ? n2 : n1;
      const other = node === n2 ? n1 : n2;
      const before = (await cluster.readNode(node.name)).metadata?.annotations?.[PUBLIC_KEY_ANNOTATION];
      const p = await probes();
      await sleep(500);
      const started = Date.now();
      await rotateKey(mesh, node);
      let after: string | undefined;
      await waitFor(`the new key on Node ${node.name}`, async () => {
        after = (await cluster.readNode(node.name)).metadata?.annotations?.[PUBLIC_KEY_ANNOTATION];
        return after !== undefined && after !== before;
      }, scaled(20_000));
      await waitFor(`${other.name} to use ${node.name}'s new key`, async () => (await cluster.device(other)).peers.some((peer) => peer.publicKey === after), scaled(20_000));
      const rotateToPeerMs = Date.now() - started;
      await sleep(1_500);
      const udp = await p.udp.stop();
      const tcp = await p.tcp.stop();
      const log = async (n: TestNode) => parseNetdLog(await readFile(cluster.netd(n)?.o.logFile ?? "", "utf8").catch(() => ""));
      const timeline = after === undefined ? undefined : rotationTimeline(await log(node), await log(other), started, after);
      rotations.push({ node: node.name, udp, tcp, rotateToPeerMs, timeline });
      const steps = timeline ? `; published +${timeline.publishedMs} ms, switched +${timeline.switchedMs} ms, peer set +${timeline.peerSetMs} ms` : "";
      o.progress(`gaps: key rotation on ${node.name}: UDP gap ${udp.maxGapMs} ms, ${udp.lost} of ${udp.sent} lost; TCP gap ${tcp.maxGapMs} ms${tcp.closed ? ", connection dropped" : ""}${steps}`);
      await sleep(500);
    }
    return { probeIntervalMs: { udp: UDP_INTERVAL_MS, tcp: TCP_INTERVAL_MS }, restarts, rotations };
  } finally {
    for (const e of echoes) await e.stop("SIGKILL");
  }
}

async function rotateKey(mesh: Mesh, node: TestNode): Promise<void> {
  const { tb, cluster } = mesh.env;
  await tb.exec(node.ns, [process.execPath, join(packageRoot(), "dist/cmd/cloak.js"), "netd", "rotate-key", `--state-dir=${cluster.stateDir(node)}`], { timeoutMs: scaled(60_000) });
}
