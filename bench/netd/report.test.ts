import { describe, expect, it } from "vitest";
import type { ChangeSample, ConvergenceResult, SizeResult, StartSample } from "./convergence.js";
import { rotationTimeline, type GapResult } from "./gaps.js";
import type { IperfResult } from "./iperf.js";
import { convergenceTables, convergenceTargets, gapTargets, pairedRatios, rotationTable, throughputTarget, wgIpCommands } from "./report.js";
import { bestMtu, mtuCandidates, rotate, type ThroughputResult, type ThroughputSample } from "./throughput.js";

const proc = { rssMb: 100, peakRssMb: 120, cpuSeconds: 1.5, childCpuSeconds: 0.2 };
const start = (ms: number): StartSample => ({ toProgrammedMs: ms, toFirstLogMs: 500, commands: { ip: 11, wg: 3, nft: 1 }, commandMs: 200, peersChanged: 1, routesChanged: 2, proc });
const change = (toWgMs: number, commands: Record<string, number>): ChangeSample => ({ toWgMs, toProgrammedMs: toWgMs + 50, requestMs: 10, commands, commandMs: 80, reconciles: 1 });
const size = (nodes: number, o: { start: number[]; added: number[]; commands: Record<string, number>; peak: number }): SizeResult => ({
  nodes,
  peers: nodes - 1,
  routes: 2 * (nodes - 1),
  start: o.start.map(start),
  restart: o.start.map(start),
  added: o.added.map((ms) => change(ms, o.commands)),
  removed: o.added.map((ms) => change(ms, o.commands)),
  peakRssMb: o.peak,
  lastRun: proc,
  wireguardGoRssMb: 10,
  createSeconds: 1,
});
const convergence = (large: Record<string, number>): ConvergenceResult => ({
  sizes: [
    size(10, { start: [800, 900, 700], added: [40, 50, 60], commands: { ip: 7, wg: 3, nft: 1 }, peak: 155 }),
    size(5000, { start: [2900, 3100, 2800], added: [150, 170, 160], commands: large, peak: 400.04 }),
  ],
  nodeJsonBytes: 3100,
  options: { sizes: [10, 5000], startSamples: 3, changeSamples: 3, dualStack: true, createConcurrency: 32 },
});

describe("convergence verdicts", () => {
  it("judges the 5 000-node targets on medians and says by how much they are missed", () => {
    const [program, added, rss, growth] = convergenceTargets(convergence({ ip: 7, wg: 3, nft: 1 }));
    expect(program).toMatchObject({ id: "fullProgramAt5000Ms", value: 2900, met: true, margin: 100 });
    expect(added).toMatchObject({ id: "addedNodeAt5000Ms", value: 160, met: false, margin: -60 });
    expect(rss).toMatchObject({ id: "peakRssAt5000Mb", value: 400, met: false, margin: -300 });
    expect(growth).toMatchObject({ id: "commandsPerChangeGrowth", value: 1, met: true });
  });

  it("notices invocations that grow with the cluster", () => {
    const growth = convergenceTargets(convergence({ ip: 7, wg: 8, nft: 1 }))[3];
    expect(growth?.value).toBeCloseTo(1.5);
    expect(growth?.met).toBe(false);
    expect(wgIpCommands({ commands: { ip: 7, wg: 3, nft: 1 } })).toBe(10);
  });

  it("reports a target as not measured when 5 000 nodes were not run", () => {
    const c = convergence({ ip: 7, wg: 3, nft: 1 });
    const small: ConvergenceResult = { ...c, sizes: c.sizes.slice(0, 1) };
    const verdicts = convergenceTargets(small);
    expect(verdicts.every((v) => !v.met)).toBe(true);
    expect(verdicts[0]?.text).toMatch(/not measured/);
  });

  it("shows each size's commands per change by program", () => {
    const [, changes] = convergenceTables(convergence({ ip: 7, wg: 3, nft: 1 }));
    expect(changes?.rows[0]).toEqual([10, "node added", 3, 50, 60, 60, 100, 10, "ip 7, nft 1, wg 3", 10, 1]);
  });
});

const iperf = (mbps: number): IperfResult => ({ receivedMbps: mbps, sentMbps: mbps, retransmits: 0, mss: 1388, seconds: 5 });
const sample = (path: ThroughputSample["path"], mtu: number, round: number, mbps: number): ThroughputSample => ({ path, mtu, round, result: iperf(mbps) });

describe("throughput", () => {
  it("offers MTUs up to the largest that crosses the underlay whole, and the underlay's own", () => {
    expect(mtuCandidates(1500, "ipv4")).toEqual([
      { mtu: 1280, fragments: false },
      { mtu: 1380, fragments: false },
      { mtu: 1420, fragments: false },
      { mtu: 1440, fragments: false },
      { mtu: 1500, fragments: true },
    ]);
    expect(mtuCandidates(1500, "ipv6").map((c) => c.mtu)).toEqual([1280, 1360, 1400, 1420, 1500]);
  });

  it("picks the best median among the MTUs that do not fragment", () => {
    const candidates = mtuCandidates(1500, "ipv4");
    const sweep = [sample("hand", 1420, 0, 300), sample("hand", 1420, 1, 320), sample("hand", 1440, 0, 330), sample("hand", 1440, 1, 310), sample("hand", 1500, 0, 900)];
    // 1440's median (nearest rank) is 310, 1420's is 300; 1500 fragments and is never chosen.
    expect(bestMtu(sweep, candidates)).toBe(1440);
  });

  it("rotates the order of the paths by round", () => {
    expect([0, 1, 2, 3].map((r) => rotate(["a", "b", "c"], r).join(""))).toEqual(["abc", "bca", "cab", "abc"]);
  });

  it("compares netd with the hand-made tunnel round by round", () => {
    const samples = [sample("netd", 1420, 0, 99), sample("hand", 1440, 0, 100), sample("netd", 1420, 1, 190), sample("hand", 1440, 1, 200), sample("hand", 1440, 2, 100)];
    expect(pairedRatios(samples, "netd", "hand")).toEqual([0.99, 0.95]);
    const t = { implementation: "userspace", samples } as unknown as ThroughputResult;
    expect(throughputTarget(t, false)).toMatchObject({ id: "throughputRatioHost", value: 0.95, met: false });
    expect(throughputTarget(t, true)).toMatchObject({ id: "throughputRatioVm", indicative: true });
  });
});

describe("gap verdicts", () => {
  const probe = (lost: number, maxGapMs: number) => ({ sent: 300, received: 300 - lost, lost, maxGapMs });
  const tcp = { sent: 150, echoed: 150, closed: false, maxGapMs: 30 };
  it("counts every lost datagram of the restarts and takes the worst rotation", () => {
    const g: GapResult = {
      probeIntervalMs: { udp: 10, tcp: 20 },
      restarts: [
        { node: "n2", udp: probe(0, 20), tcp, restartToInSyncMs: 900, peersChanged: 0 },
        { node: "n1", udp: probe(2, 40), tcp, restartToInSyncMs: 900, peersChanged: 0 },
      ],
      rotations: [
        { node: "n2", udp: probe(0, 40), tcp, rotateToPeerMs: 1000, timeline: { publishedMs: 30, switchedMs: 40, peerSetMs: 50 } },
        { node: "n1", udp: probe(0, 120), tcp, rotateToPeerMs: 1000, timeline: undefined },
      ],
    };
    const [restart, rotation] = gapTargets(g);
    expect(restart).toMatchObject({ value: 2, met: false });
    expect(rotation).toMatchObject({ value: 120, met: false, margin: -20 });
    expect(rotationTable(g)?.rows).toEqual([[1, 30, 40, 50, 10, 40]]);
  });

  it("reads a rotation's steps from both netds' logs", () => {
    const key = "NEWKEY=";
    const at = (time: number, msg: string, cmd?: string) => ({ time, msg, ...(cmd ? { cmd } : {}) });
    const rotating = [at(1000, "rotated private key"), at(1030, "published public key on the Node"), at(1042, "switched the interface to the new key")];
    const other = [at(990, "command", `wg set w peer ${key} allowed-ips x`), at(1051, "command", `wg set w peer ${key} endpoint e allowed-ips x peer OLD= remove`)];
    expect(rotationTimeline(rotating, other, 900, key)).toEqual({ publishedMs: 30, switchedMs: 42, peerSetMs: 51 });
    expect(rotationTimeline(rotating.slice(0, 2), other, 900, key)).toBeUndefined();
  });
});
