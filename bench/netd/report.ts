import { median, round, summarize } from "../lib/stats.js";
import type { Table } from "../lib/table.js";
import { judge, type Verdict } from "../lib/verdict.js";
import type { ChangeSample, ConvergenceResult, SizeResult } from "./convergence.js";
import type { GapResult } from "./gaps.js";
import type { ThroughputResult, ThroughputSample } from "./throughput.js";

/** The tables and verdicts of `make bench-netd`, from the measured samples (pure). */

const r1 = (v: number) => round(v, 1);

/** wg + ip commands of one change (nft is counted apart: it is not part of the target). */
export function wgIpCommands(s: Pick<ChangeSample, "commands">): number {
  return (s.commands["wg"] ?? 0) + (s.commands["ip"] ?? 0);
}

function commandsText(samples: readonly Pick<ChangeSample, "commands">[]): string {
  const programs = [...new Set(samples.flatMap((s) => Object.keys(s.commands)))].sort();
  return programs.map((p) => `${p} ${median(samples.map((s) => s.commands[p] ?? 0))}`).join(", ");
}

export function convergenceTables(c: ConvergenceResult): Table[] {
  const stack = c.options.dualStack ? "dual-stack: 2 pod CIDRs per node" : "1 pod CIDR per node";
  return [
    {
      title: "netd start with N Node objects: process start → every peer and route programmed (host, wireguard-go), ms",
      columns: ["nodes", "peers", "routes", "full program p50", "max", "of which Node start-up", "restart p50 (in sync)", "peak RSS MB", "CPU s (full program)", "wireguard-go RSS MB"],
      rows: c.sizes.map((s) => [
        s.nodes,
        s.peers,
        s.routes,
        median(s.start.map((x) => x.toProgrammedMs)),
        Math.max(...s.start.map((x) => x.toProgrammedMs)),
        median(s.start.map((x) => x.toFirstLogMs)),
        median(s.restart.map((x) => x.toProgrammedMs)),
        r1(s.peakRssMb),
        r1(median(s.start.map((x) => x.proc.cpuSeconds))),
        s.wireguardGoRssMb === undefined ? "–" : r1(s.wireguardGoRssMb),
      ]),
      notes: [
        `${c.options.startSamples} starts from no interface and ${c.options.startSamples} restarts with the interface in place per size; Node objects as a kubelet registers them (${Math.round(c.nodeJsonBytes / 100) / 10} KB of JSON each before the API server adds its metadata), ${stack}`,
        "full program: from spawning netd to the end of the reconcile that set every peer and route (netd's own log, same clock); checked against `wg show` and `ip route` afterwards",
        "peak RSS: the kernel's high-water mark (VmHWM) of netd's process over its runs at that size; CPU: netd's own user + system seconds at the end of the full program",
      ],
    },
    {
      title: "One Node added or deleted while netd runs: API request sent → the peer in `wg show` / the reconcile done, ms",
      columns: ["nodes", "change", "n", "to wg show p50", "p90", "max", "to routes done p50", "API request p50", "commands per change (p50)", "wg+ip p50", "reconciles"],
      rows: c.sizes.flatMap((s) =>
        (["added", "removed"] as const).map((kind) => {
          const samples = s[kind];
          const wg = summarize(samples.map((x) => x.toWgMs));
          return [
            s.nodes,
            kind === "added" ? "node added" : "node deleted",
            samples.length,
            wg.p50,
            wg.p90,
            wg.max,
            median(samples.map((x) => x.toProgrammedMs)),
            median(samples.map((x) => x.requestMs)),
            commandsText(samples),
            median(samples.map(wgIpCommands)),
            Math.max(...samples.map((x) => x.reconciles)),
          ];
        }),
      ),
      notes: [
        "to wg show: until the `wg set` naming the peer exited (from then on `wg show` lists it); to routes done: until the reconcile's last command (routes in netd's table, the device re-read)",
        "the clock starts when the benchmark sends the create/delete, so the API request (through the test harness's relay into the API server's namespace) is included",
        "commands: every wg/ip/nft process netd started in that window, from its debug log",
      ],
    },
  ];
}

export function convergenceTargets(c: ConvergenceResult): Verdict[] {
  const at = (n: number): SizeResult | undefined => c.sizes.find((s) => s.nodes === n);
  const big = at(5000);
  const sorted = [...c.sizes].sort((a, b) => a.nodes - b.nodes);
  const smallest = sorted[0];
  const largest = sorted.at(-1);
  const perChange = (s: SizeResult | undefined) => (s ? median([...s.added, ...s.removed].map(wgIpCommands)) : Number.NaN);
  return [
    judge({ id: "fullProgramAt5000Ms", what: "netd at 5 000 nodes: start to fully programmed interface (p50)", op: "<", bound: 3000, unit: "ms" }, big ? median(big.start.map((s) => s.toProgrammedMs)) : Number.NaN),
    judge({ id: "addedNodeAt5000Ms", what: "netd at 5 000 nodes: one added node in `wg show` (p50)", op: "<", bound: 100, unit: "ms" }, big ? median(big.added.map((s) => s.toWgMs)) : Number.NaN),
    judge({ id: "peakRssAt5000Mb", what: "netd at 5 000 nodes: peak RSS", op: "<=", bound: 100, unit: "MB" }, big ? r1(big.peakRssMb) : Number.NaN),
    judge(
      {
        id: "commandsPerChangeGrowth",
        what: `wg+ip invocations per change, ${largest?.nodes ?? "?"} nodes / ${smallest?.nodes ?? "?"} nodes (independent of size: 1)`,
        op: "<=",
        bound: 1,
      },
      smallest && largest && smallest !== largest ? perChange(largest) / perChange(smallest) : Number.NaN,
    ),
  ];
}

/** Per round, netd's rate over the hand-made tunnel's: both measured back to back. */
export function pairedRatios(samples: readonly ThroughputSample[], a: string, b: string): number[] {
  const rounds = [...new Set(samples.map((s) => s.round))];
  return rounds.flatMap((r) => {
    const x = samples.find((s) => s.round === r && s.path === a);
    const y = samples.find((s) => s.round === r && s.path === b);
    return x && y ? [x.result.receivedMbps / y.result.receivedMbps] : [];
  });
}

export function throughputTables(t: ThroughputResult, where: string): Table[] {
  const impl = t.implementation === "kernel" ? "kernel WireGuard" : "wireguard-go";
  const sweepRows = t.candidates.map((c) => {
    const xs = t.sweep.filter((s) => s.mtu === c.mtu);
    const mbps = summarize(xs.map((s) => s.result.receivedMbps));
    return [c.mtu, c.fragments ? "yes" : "no", xs.length, r1(mbps.p50), r1(mbps.min), r1(mbps.max), median(xs.map((s) => s.result.retransmits))] as const;
  });
  const hand = median(t.samples.filter((s) => s.path === "hand").map((s) => s.result.receivedMbps));
  const plain = median(t.samples.filter((s) => s.path === "plain").map((s) => s.result.receivedMbps));
  const rows = (["plain", "netd", "hand"] as const).map((path) => {
    const xs = t.samples.filter((s) => s.path === path);
    const mbps = summarize(xs.map((s) => s.result.receivedMbps));
    const name = path === "plain" ? "plain underlay (no encryption)" : path === "netd" ? `netd's ${impl} tunnel` : `hand-configured ${impl}, best MTU`;
    return [name, xs[0]?.mtu ?? Number.NaN, xs.length, r1(mbps.p50), r1(mbps.min), r1(mbps.max), median(xs.map((s) => s.result.retransmits)), round(mbps.p50 / hand, 3), round(mbps.p50 / plain, 3)];
  });
  const paired = pairedRatios(t.samples, "netd", "hand");
  return [
    {
      title: `Hand-configured ${impl} tunnel: iperf3 TCP pod → pod by tunnel MTU, Mbit/s (${where})`,
      columns: ["MTU", "fragments on the underlay", "n", "p50", "min", "max", "retransmits p50"],
      rows: sweepRows.map((r) => [...r]),
      notes: [
        `${t.endpointFamily === "ipv6" ? "IPv6" : "IPv4"} endpoints on a ${t.underlayMtu}-byte underlay: the largest MTU whose packets cross unfragmented is ${t.largestUnfragmentedMtu}; best non-fragmenting MTU measured: ${t.bestMtu} (netd's: ${t.netdMtu})`,
        `${t.options.sweepRounds} rounds of ${t.options.seconds} s (first ${t.options.omitSeconds} s omitted), candidates in rotating order; a fragmenting MTU is shown but never chosen (one lost fragment loses the packet, and many networks drop fragments)`,
      ],
    },
    {
      title: `iperf3 TCP pod → pod: plain vs netd vs hand-configured tunnel, Mbit/s (${where})`,
      columns: ["path", "MTU", "n", "p50", "min", "max", "retransmits p50", "/ hand-configured", "/ plain"],
      rows,
      notes: [
        `${t.options.rounds} rounds of ${t.options.seconds} s (first ${t.options.omitSeconds} s omitted), the three paths back to back in rotating order; pods' MTU set to each path's MTU`,
        `netd / hand-configured per round (back-to-back pairs): p50 ${round(median(paired), 3)}, min ${round(Math.min(...paired), 3)}, max ${round(Math.max(...paired), 3)}`,
      ],
    },
  ];
}

export function throughputTarget(t: ThroughputResult, indicative: boolean): Verdict {
  const impl = t.implementation === "kernel" ? "kernel WireGuard" : "wireguard-go";
  return judge(
    {
      id: indicative ? "throughputRatioVm" : "throughputRatioHost",
      what: `tunnel throughput, netd / hand-tuned (${impl}, p50 of per-round ratios)`,
      op: ">=",
      bound: 0.98,
      ...(indicative ? { indicative: true } : {}),
    },
    round(median(pairedRatios(t.samples, "netd", "hand")), 3),
  );
}

export function gapTable(g: GapResult): Table {
  const row = (what: string, samples: GapResult["restarts"] | GapResult["rotations"], until: number[]) => {
    const udp = summarize(samples.map((s) => s.udp.maxGapMs));
    return [
      what,
      samples.length,
      udp.p50,
      udp.max,
      samples.reduce((sum, s) => sum + (s.udp.lost ?? 0), 0),
      samples.reduce((sum, s) => sum + s.udp.sent, 0),
      Math.max(...samples.map((s) => s.tcp.maxGapMs)),
      samples.filter((s) => s.tcp.closed || s.tcp.error !== undefined).length,
      median(until),
    ];
  };
  return {
    title: "Connectivity during a netd restart and a key rotation, pod → pod through netd's tunnel (host, wireguard-go)",
    columns: ["event", "n", "UDP gap p50 ms", "UDP gap max ms", "UDP lost", "UDP sent", "TCP gap max ms", "TCP connections dropped", "event done p50 ms"],
    rows: [
      row("netd killed (SIGKILL) and restarted", g.restarts, g.restarts.map((s) => s.restartToInSyncMs)),
      row("key rotated (`cloak netd rotate-key`)", g.rotations, g.rotations.map((s) => s.rotateToPeerMs)),
    ],
    notes: [
      `a UDP datagram every ${g.probeIntervalMs.udp} ms echoed back and one TCP connection writing every ${g.probeIntervalMs.tcp} ms; the gap is the longest time without an echo (about the interval when nothing is missed); the node acted on alternates`,
      "event done: restart = new process start to the end of its first reconcile; rotation = `rotate-key` start (a Node process) to the other node's interface holding the new key",
    ],
  };
}

/** Where a rotation's time goes, from both netds' logs (p50 over the rotations). */
export function rotationTable(g: GapResult): Table | undefined {
  const t = g.rotations.flatMap((r) => (r.timeline ? [{ ...r.timeline, gap: r.udp.maxGapMs }] : []));
  if (t.length === 0) return undefined;
  const p50 = (f: (x: (typeof t)[number]) => number) => median(t.map(f));
  return {
    title: "Key rotation, step by step: ms after the rotating netd logged its new key (p50; host, wireguard-go)",
    columns: ["n", "Node patched (key published)", "own interface switched", "peer's `wg set` with the new key", "peer after switch", "UDP gap p50"],
    rows: [[t.length, p50((x) => x.publishedMs), p50((x) => x.switchedMs), p50((x) => x.peerSetMs), p50((x) => x.peerSetMs - x.switchedMs), p50((x) => x.gap)]],
    notes: [
      "the rotating netd publishes first and switches its interface as soon as the patch returns; the peer switches when its watch delivers the change (a delta: one `wg set`); the gap is from the earlier switch to the later one, plus the handshake the next probe triggers",
    ],
  };
}

export function gapTargets(g: GapResult): Verdict[] {
  return [
    judge(
      { id: "restartLostPackets", what: "netd restart: packets of a steady flow lost (UDP, all restarts)", op: "<=", bound: 0 },
      g.restarts.length ? g.restarts.reduce((sum, s) => sum + (s.udp.lost ?? 0), 0) : Number.NaN,
    ),
    judge({ id: "rotationGapMs", what: "key rotation: gap (worst of all rotations)", op: "<", bound: 100, unit: "ms" }, g.rotations.length ? Math.max(...g.rotations.map((s) => s.udp.maxGapMs)) : Number.NaN),
  ];
}

/** What the convergence figures say beyond the tables: where netd's memory and time go. */
export function convergenceNotes(c: ConvergenceResult): string[] {
  const sorted = [...c.sizes].sort((a, b) => a.nodes - b.nodes);
  const small = sorted[0];
  const large = sorted.at(-1);
  if (!small || !large) return [];
  const notes = [
    `netd's peak RSS is ${r1(small.peakRssMb)} MB at ${small.nodes} nodes and ${r1(large.peakRssMb)} MB at ${large.nodes}: the first figure is what the process costs before the cluster's size matters (Node.js and the libraries it loads)`,
  ];
  const first = large.start[0];
  if (first) {
    notes.push(
      `at ${large.nodes} nodes a full program spends ${median(large.start.map((s) => s.toFirstLogMs))} ms (p50) before netd's first log line (Node.js start-up, module loading) and ${Math.round(median(large.start.map((s) => s.commandMs)))} ms in wg/ip/nft commands (p50, summed); its commands: ${commandsText(large.start)}`,
    );
  }
  return notes;
}
