import { join } from "node:path";
import { Daemon } from "../../test/netns/daemon.js";
import { scaled } from "../../test/netns/timing.js";
import { median } from "../lib/stats.js";
import type { Path } from "./hand-tunnel.js";
import { iperfClientArgv, iperfServerArgv, parseIperf, type IperfResult } from "./iperf.js";
import type { Mesh } from "./mesh.js";

/**
 * Pod-to-pod TCP throughput (iperf3, one stream, pod n1 → pod n2) over three paths in the same
 * testbed: the plain underlay, netd's WireGuard, and a hand-configured WireGuard tunnel with the
 * same implementation. First the hand tunnel's MTU is swept to find its best; then the three
 * paths are measured in rounds, rotating which goes first, at that MTU. Picking the best MTU in
 * one phase and comparing in another keeps the winner's luck in the sweep out of the ratio.
 */

export interface ThroughputOptions {
  readonly seconds: number;
  readonly omitSeconds: number;
  readonly sweepRounds: number;
  readonly rounds: number;
  readonly progress: (line: string) => void;
}

export interface ThroughputSample {
  readonly path: Path;
  /** The MTU of the path's tunnel interface (the underlay's for plain), also set on the pods. */
  readonly mtu: number;
  readonly round: number;
  readonly result: IperfResult;
}

export interface MtuCandidate {
  readonly mtu: number;
  /** True when a full-size packet of this MTU no longer fits the underlay once encapsulated. */
  readonly fragments: boolean;
}

export interface ThroughputResult {
  readonly implementation: "kernel" | "userspace";
  readonly endpointFamily: "ipv4" | "ipv6";
  readonly underlayMtu: number;
  readonly netdMtu: number;
  /** The largest tunnel MTU whose packets cross the underlay whole (underlay − outer IP − UDP − 32). */
  readonly largestUnfragmentedMtu: number;
  readonly candidates: MtuCandidate[];
  readonly sweep: ThroughputSample[];
  readonly bestMtu: number;
  readonly samples: ThroughputSample[];
  readonly options: Omit<ThroughputOptions, "progress">;
}

const IPERF_PORT = 5201;

/** WireGuard's per-packet overhead past the outer IP header: UDP 8 + data header 16 + tag 16. */
const WG_OVERHEAD = 8 + 32;

export function mtuCandidates(underlayMtu: number, endpointFamily: "ipv4" | "ipv6"): MtuCandidate[] {
  const largest = underlayMtu - (endpointFamily === "ipv6" ? 40 : 20) - WG_OVERHEAD;
  const mtus = [...new Set([1280, largest - 60, largest - 20, largest, underlayMtu])].filter((m) => m >= 1280).sort((a, b) => a - b);
  return mtus.map((mtu) => ({ mtu, fragments: mtu > largest }));
}

/** The candidate with the highest median among those that do not fragment. */
export function bestMtu(sweep: readonly ThroughputSample[], candidates: readonly MtuCandidate[]): number {
  const usable = candidates.filter((c) => !c.fragments);
  const medians = usable.map((c) => ({ mtu: c.mtu, mbps: median(sweep.filter((s) => s.mtu === c.mtu).map((s) => s.result.receivedMbps)) }));
  const best = medians.filter((m) => Number.isFinite(m.mbps)).sort((a, b) => b.mbps - a.mbps)[0];
  if (!best) throw new Error("the MTU sweep measured nothing");
  return best.mtu;
}

/** `items` rotated by `by`: round r starts with a different path, so no path always goes first. */
export function rotate<T>(items: readonly T[], by: number): T[] {
  const k = items.length === 0 ? 0 : by % items.length;
  return [...items.slice(k), ...items.slice(0, k)];
}

export async function measureThroughput(mesh: Mesh, o: ThroughputOptions): Promise<ThroughputResult> {
  const { env, n1, n2, hand } = mesh;
  const underlayMtu = env.tb.mtu;
  const candidates = mtuCandidates(underlayMtu, mesh.endpointFamily);
  const largest = underlayMtu - (mesh.endpointFamily === "ipv6" ? 40 : 20) - WG_OVERHEAD;
  const server = new Daemon({ name: "iperf3-server", netns: n2.podNs, logFile: join(env.dir, "iperf3-server.log"), argv: iperfServerArgv(IPERF_PORT) });
  try {
    await server.waitForOutput((out) => out.includes("Server listening"), scaled(10_000));
    const run = async (path: Path, mtu: number, round: number): Promise<ThroughputSample> => {
      if (path === "hand" && hand.currentMtu !== mtu) await hand.setMtu(mtu);
      await hand.select(path, mtu);
      const argv = iperfClientArgv({ host: n2.podIP4, port: IPERF_PORT, seconds: o.seconds, omitSeconds: o.omitSeconds });
      const r = await env.tb.exec(n1.podNs, argv, { timeoutMs: scaled((o.seconds + o.omitSeconds + 30) * 1000) });
      const sample = { path, mtu, round, result: parseIperf(r.stdout) };
      o.progress(`throughput: ${path} MTU ${mtu}: ${Math.round(sample.result.receivedMbps)} Mbit/s (${sample.result.retransmits} retransmits)`);
      return sample;
    };

    const sweep: ThroughputSample[] = [];
    for (let r = 0; r < o.sweepRounds; r++) {
      for (const c of rotate(candidates, r)) sweep.push(await run("hand", c.mtu, r));
    }
    const best = bestMtu(sweep, candidates);
    o.progress(`throughput: the hand-made tunnel is fastest at MTU ${best} (netd's: ${mesh.netdMtu})`);

    const samples: ThroughputSample[] = [];
    const paths: Array<[Path, number]> = [
      ["plain", underlayMtu],
      ["netd", mesh.netdMtu],
      ["hand", best],
    ];
    for (let r = 0; r < o.rounds; r++) {
      for (const [path, mtu] of rotate(paths, r)) samples.push(await run(path, mtu, r));
    }
    return {
      implementation: mesh.implementation,
      endpointFamily: mesh.endpointFamily,
      underlayMtu,
      netdMtu: mesh.netdMtu,
      largestUnfragmentedMtu: largest,
      candidates,
      sweep,
      bestMtu: best,
      samples,
      options: { seconds: o.seconds, omitSeconds: o.omitSeconds, sweepRounds: o.sweepRounds, rounds: o.rounds },
    };
  } finally {
    await hand.select("netd", mesh.netdMtu).catch(() => undefined);
    await server.stop("SIGKILL");
  }
}
