/**
 * `make bench-keyservice`: GetDataKey over mutual TLS, measured against baselines in the same
 * run (side by side, under load at the same time; several rounds, medians):
 *
 *   baseline — cloak's key service against a bare grpc-js server with the same derivation and
 *              TLS, at 1 and 64 concurrent callers;
 *   profile  — where cloak's extra CPU per call goes: the service with its audit line, its
 *              per-request metrics, or both turned off (bench/keyservice/variant-server.ts);
 *   components — the CPU per call of each piece (derivation, audit line, metrics, allow-list,
 *              token review cache, authorisation decision at 10 000 PVs and 20 000 pods), in
 *              process (bench/keyservice/components.ts): what the shared machine's load moves least;
 *   authz    — per-node authorisation on, with 10 000 PVs (claims, CloakKeys) and 20 000 pods
 *              in a real API server and so in the service's caches, against authorisation off.
 *
 * Prints the tables and writes bench/results/keyservice-<date>.json (bench/lib/result.ts).
 * CLOAK_BENCH_KEYSERVICE_* variables size it (BENCHMARKS.md).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { packageRoot } from "../../lib/paths.js";
import { describeMachine } from "../lib/metadata.js";
import { intFromEnv, listFromEnv } from "../lib/params.js";
import { procStats } from "../lib/proc-stats.js";
import { renderResult, writeResult, type BenchResult } from "../lib/result.js";
import { median, round } from "../lib/stats.js";
import type { Table } from "../lib/table.js";
import { judge, type Verdict } from "../lib/verdict.js";
import { startApiServer, type ApiServer } from "../../test/apiserver/apiserver.js";
import { prepareAuthzCluster } from "../../test/keyservice-harness/cluster.js";
import { cloakEntry, runCloak } from "../../test/keyservice-harness/index.js";
import type { LoadResult } from "./load.js";
import { populate, type Populated } from "./populate.js";
import type { Variant } from "./variant-server.js";

const P = {
  sections: listFromEnv("CLOAK_BENCH_KEYSERVICE_SECTIONS", ["baseline", "profile", "components", "authz"]),
  rounds: intFromEnv("CLOAK_BENCH_KEYSERVICE_ROUNDS", 3),
  durationMs: intFromEnv("CLOAK_BENCH_KEYSERVICE_DURATION_MS", 5000),
  warmupMs: intFromEnv("CLOAK_BENCH_KEYSERVICE_WARMUP_MS", 1000),
  volumes: intFromEnv("CLOAK_BENCH_KEYSERVICE_VOLUMES", 10_000),
  pods: intFromEnv("CLOAK_BENCH_KEYSERVICE_PODS", 20_000),
  nodes: intFromEnv("CLOAK_BENCH_KEYSERVICE_NODES", 100),
  tokenNodes: intFromEnv("CLOAK_BENCH_KEYSERVICE_TOKEN_NODES", 16),
  /**
   * Node flags for every server, as the key service's container runs it (keyservice/README.md):
   * V8 otherwise sizes its young generation from the machine's memory.
   */
  nodeFlags: (process.env["CLOAK_BENCH_KEYSERVICE_NODE_FLAGS"] ?? "--max-semi-space-size=1").split(" ").filter((f) => f !== ""),
};
const CONCURRENCY = [1, 64] as const;
const IDENTITY = "spiffe://cloak/ns/cloak-system/sa/cloak-csi-node";
const distDir = join(packageRoot(), "dist", "bench", "keyservice");

type ServerName = "baseline" | "cloak" | Variant | "cloak-authz";

interface Server {
  readonly name: ServerName;
  readonly target: string;
  readonly pid: number;
  readonly logFile: string;
  /** From spawn to ready (the authorising service lists its caches first). */
  readonly startMs: number;
  stop(): Promise<void>;
}

interface Run {
  readonly section: string;
  readonly server: ServerName;
  readonly concurrency: number;
  readonly round: number;
  readonly result: LoadResult;
  readonly cpuUsPerCall: number;
  readonly rssMb: number;
}

async function main(): Promise<void> {
  const started = performance.now();
  const date = new Date().toISOString();
  const dir = await mkdtemp(join(tmpdir(), "cloak-ks-bench-"));
  const servers: Server[] = [];
  let api: ApiServer | undefined;
  const runs: Run[] = [];
  const log = (text: string) => process.stderr.write(`${text}\n`);
  try {
    const keys = join(dir, "keys");
    await runCloak(["keys", "init", keys, "--client", `node=${IDENTITY}`, "--dns", "localhost", "--ip", "127.0.0.1"]);
    const client = { ca: join(keys, "clients/node/ca.crt"), cert: join(keys, "clients/node/tls.crt"), key: join(keys, "clients/node/tls.key") };
    const keyserviceArgs = [
      "--listen=127.0.0.1:0",
      "--metrics-listen=127.0.0.1:0",
      `--master-secret=${join(keys, "master-secret")}`,
      `--salt=${join(keys, "salt")}`,
      `--tls-cert=${join(keys, "server/tls.crt")}`,
      `--tls-key=${join(keys, "server/tls.key")}`,
      `--client-ca=${join(keys, "server/ca.crt")}`,
      `--allow=${IDENTITY}`,
    ];
    const start = async (name: ServerName, argv: string[]): Promise<Server> => {
      const server = await startServer(name, argv, join(dir, `${name}.log`));
      servers.push(server);
      return server;
    };
    const measure = async (section: string, server: Server, concurrency: number, round: number, pairs?: string): Promise<Run> => {
      const before = (await procStats(server.pid)).cpuSeconds;
      const result = await load(server.target, client, concurrency, pairs);
      const after = await procStats(server.pid);
      // Server CPU per answered call: what each request costs the server, whatever else the
      // machine is doing (the throughput figures are only as quiet as the machine).
      const run: Run = { section, server: server.name, concurrency, round, result, cpuUsPerCall: ((after.cpuSeconds - before) / result.answered) * 1e6, rssMb: after.rssMb };
      runs.push(run);
      log(
        `${section} round ${round} ${server.name.padEnd(20)} c=${String(concurrency).padStart(2)}: ${result.perSecond.toFixed(0)}/s p50 ${result.p50Ms.toFixed(3)} ms p99 ${result.p99Ms.toFixed(3)} ms, ` +
          `server ${run.cpuUsPerCall.toFixed(0)} µs CPU/call, RSS ${run.rssMb.toFixed(0)} MB${result.errors ? ` ERRORS ${result.errors}` : ""}`,
      );
      if (result.errors > 0) throw new Error(`${server.name} answered ${result.errors} calls with errors (see above): the figures would not be of the path measured`);
      return run;
    };
    /**
     * Every server of the group under load at the same time, each with its own load generator,
     * once per round and concurrency: on a machine shared with other work, whose load swings by
     * a factor of several within a minute, side by side is the only way two servers see the
     * same machine. (Measured one after the other, the same server's CPU per call varied 3×
     * between rounds.) The servers share the CPU between them fairly, so a server that costs
     * more per call answers fewer calls: its throughput ratio is its efficiency ratio.
     */
    const together = async (section: string, group: Server[], concurrencies: readonly number[], pairs?: string): Promise<void> => {
      for (let round = 1; round <= P.rounds; round++) {
        for (const concurrency of concurrencies) await Promise.all(group.map((server) => measure(section, server, concurrency, round, pairs)));
      }
    };

    const cloak = await start("cloak", [cloakEntry(), "keyservice", ...keyserviceArgs]);
    const baseline = await start("baseline", [join(distDir, "baseline-server.js"), keys]);
    if (P.sections.includes("baseline")) await together("baseline", [baseline, cloak], CONCURRENCY);
    if (P.sections.includes("profile")) {
      const variants: Server[] = [];
      for (const v of ["no-audit", "no-metrics", "no-audit-no-metrics"] as const) variants.push(await start(v, [join(distDir, "variant-server.js"), v, ...keyserviceArgs]));
      await together("profile", [baseline, cloak, ...variants], [64]);
      for (const v of variants) await v.stop();
    }
    const components = P.sections.includes("components") ? await runComponents() : undefined;
    const cloakPeakRssMb = (await procStats(cloak.pid)).peakRssMb;
    const baselinePeakRssMb = (await procStats(baseline.pid)).peakRssMb;

    let authz: { populated: Populated; server: Server; rssAfterSyncMb: number; peakRssMb: number; sizes: Record<string, unknown> } | undefined;
    if (P.sections.includes("authz")) {
      const apiDir = join(dir, "api");
      api = await startApiServer({ dir: apiDir });
      const cluster = await prepareAuthzCluster(api, apiDir);
      log(`authz: populating ${P.volumes} PVs, claims and CloakKeys and ${P.pods} pods on ${P.nodes} nodes`);
      const populated = await populate(cluster, { nodes: P.nodes, volumes: P.volumes, pods: P.pods, tokenNodes: P.tokenNodes, progress: (t) => log(`authz: ${t}`) });
      cluster.close();
      const pairsFile = join(dir, "pairs.json");
      await writeFile(pairsFile, JSON.stringify(populated.pairs));
      const server = await start("cloak-authz", [cloakEntry(), "keyservice", ...keyserviceArgs, "--authorization=kubernetes", `--kubeconfig=${cluster.keyserviceKubeconfig}`]);
      const rssAfterSyncMb = (await procStats(server.pid)).rssMb;
      const synced = (await logLines(server.logFile)).find((l) => l["msg"] === "authorisation caches synced") ?? {};
      log(`authz: service ready in ${server.startMs.toFixed(0)} ms, RSS ${rssAfterSyncMb.toFixed(0)} MB, caches ${JSON.stringify(synced)}`);
      await together("authz", [cloak, server], CONCURRENCY, pairsFile);
      authz = { populated, server, rssAfterSyncMb, peakRssMb: (await procStats(server.pid)).peakRssMb, sizes: synced };
    }
    for (const s of servers) await s.stop();

    // One audit line per request: the log must count exactly the calls cloak answered.
    const answered = runs.filter((r) => r.server === "cloak").reduce((sum, r) => sum + r.result.answered, 0);
    const auditLines = (await logLines(cloak.logFile)).filter((l) => l["msg"] === "GetDataKey").length;

    const result = await report({ date, runtimeSeconds: (performance.now() - started) / 1000, runs, cloakPeakRssMb, baselinePeakRssMb, answered, auditLines, authz, components });
    process.stdout.write(renderResult(result));
    process.stdout.write(`wrote ${await writeResult(result)}\n`);
  } finally {
    for (const s of servers) await s.stop();
    await api?.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

/** Medians over rounds of one server at one concurrency in one section. */
function pick(runs: readonly Run[], section: string, server: ServerName, concurrency: number) {
  const of = runs.filter((r) => r.section === section && r.server === server && r.concurrency === concurrency);
  return {
    perSecond: median(of.map((r) => r.result.perSecond)),
    p50Ms: median(of.map((r) => r.result.p50Ms)),
    p99Ms: median(of.map((r) => r.result.p99Ms)),
    cpuUsPerCall: median(of.map((r) => r.cpuUsPerCall)),
    rssMb: Math.max(...of.map((r) => r.rssMb)),
  };
}

async function report(o: {
  date: string;
  runtimeSeconds: number;
  runs: Run[];
  cloakPeakRssMb: number;
  baselinePeakRssMb: number;
  answered: number;
  auditLines: number;
  authz: { populated: Populated; server: Server; rssAfterSyncMb: number; peakRssMb: number; sizes: Record<string, unknown> } | undefined;
  components: Record<string, number> | undefined;
}): Promise<BenchResult> {
  const { runs } = o;
  const tables: Table[] = [];
  const targets: Verdict[] = [];
  const notes: string[] = [
    "The machine is shared with other work (see the load average): throughput and latency move with it; server CPU per call moves least.",
  ];
  const fig = (f: ReturnType<typeof pick>) => [round(f.perSecond, 0), round(f.p50Ms), round(f.p99Ms), round(f.cpuUsPerCall, 1)];
  const has = (section: string) => runs.some((r) => r.section === section);

  if (has("baseline")) {
    tables.push({
      title: `GetDataKey over mutual TLS, cloak vs a bare grpc-js baseline (medians of ${P.rounds} rounds of ${P.durationMs / 1000} s)`,
      columns: ["callers", "server", "req/s", "p50 ms", "p99 ms", "server CPU µs/call"],
      rows: CONCURRENCY.flatMap((c) => (["baseline", "cloak"] as const).map((s) => [c, s, ...fig(pick(runs, "baseline", s, c))])),
    });
    const b64 = pick(runs, "baseline", "baseline", 64);
    const c64 = pick(runs, "baseline", "cloak", 64);
    const c1 = pick(runs, "baseline", "cloak", 1);
    targets.push(
      judge({ id: "cpuRatioAt64", what: "server CPU per call at 64 callers, cloak / baseline", op: "<=", bound: 1.2, unit: "×" }, round(c64.cpuUsPerCall / b64.cpuUsPerCall)),
      judge({ id: "throughputRatioAt64", what: "throughput at 64 callers, cloak / baseline", op: ">=", bound: 0.95, unit: "×" }, round(c64.perSecond / b64.perSecond)),
      judge({ id: "p99At1Ms", what: "cloak's p99 latency at 1 caller", op: "<", bound: 1, unit: "ms" }, round(c1.p99Ms)),
      judge({ id: "peakRssMb", what: "cloak's peak RSS (authorisation off)", op: "<", bound: 100, unit: "MB" }, round(o.cloakPeakRssMb, 1)),
      judge({ id: "auditLinesMissing", what: "audit lines missing or extra (one per request)", op: "<=", bound: 0 }, Math.abs(o.auditLines - o.answered)),
    );
    notes.push(`Peak RSS: cloak ${round(o.cloakPeakRssMb, 1)} MB, the bare baseline ${round(o.baselinePeakRssMb, 1)} MB (Node flags ${P.nodeFlags.join(" ") || "none"}).`);
  }
  if (has("profile")) {
    const base = pick(runs, "profile", "baseline", 64).cpuUsPerCall;
    const rows: [string, ServerName][] = [
      ["bare grpc-js baseline", "baseline"],
      ["cloak, no audit line, no request metrics", "no-audit-no-metrics"],
      ["cloak, no audit line", "no-audit"],
      ["cloak, no request metrics", "no-metrics"],
      ["cloak as shipped", "cloak"],
    ];
    const cpu = (s: ServerName) => pick(runs, "profile", s, 64).cpuUsPerCall;
    tables.push({
      title: `Where cloak's CPU per call goes: 64 callers, medians of ${P.rounds} rounds`,
      columns: ["server", "server CPU µs/call", "× baseline", "req/s"],
      rows: rows.map(([label, s]) => [label, round(cpu(s), 1), round(cpu(s) / base), round(pick(runs, "profile", s, 64).perSecond, 0)]),
      notes: [
        `audit line ≈ ${round(cpu("cloak") - cpu("no-audit"), 1)} µs/call, request metrics ≈ ${round(cpu("cloak") - cpu("no-metrics"), 1)} µs/call, ` +
          `the rest (handler, allow-list, gRPC wrapper) ≈ ${round(cpu("no-audit-no-metrics") - base, 1)} µs/call over the baseline`,
      ],
    });
  }
  if (o.components) {
    const c = o.components;
    const rows: [string, string][] = [
      ["derive", "HKDF-SHA256 of the key (the baseline does it too)"],
      ["audit", "the audit line (pino, batched, to /dev/null)"],
      ["metrics", "request counter and latency histogram"],
      ["allow-list", "matching the certificate identity"],
      ["token", "the node token's cached review (SHA-256 + lookup)"],
      ["authorize", `token + caller check + key decision at ${P.volumes} PVs, ${P.pods} pods`],
    ];
    tables.push({
      title: "CPU per call of each piece, in process (200 000 calls each)",
      columns: ["piece", "what", "µs/call"],
      rows: rows.map(([id, what]) => [id, what, round(c[id] ?? Number.NaN, 2)]),
    });
  }
  if (o.authz) {
    const a = o.authz;
    tables.push({
      title: `Authorisation at ${P.volumes} PVs, ${P.volumes} claims and CloakKeys and ${P.pods} pods (+${P.nodes} node plugin pods), on vs off (medians of ${P.rounds} rounds)`,
      columns: ["callers", "authorisation", "req/s", "p50 ms", "p99 ms", "server CPU µs/call", "RSS MB"],
      rows: CONCURRENCY.flatMap((c) =>
        (["cloak", "cloak-authz"] as const).map((s) => {
          const f = pick(runs, "authz", s, c);
          return [c, s === "cloak" ? "off" : "on", ...fig(f), round(f.rssMb, 0)];
        }),
      ),
      notes: [
        `requests: ${a.populated.pairs.length} (node, key) pairs of ${P.tokenNodes} nodes, each allowed (a pod on the node uses the claim of the key's PV); every call carries the node's token`,
      ],
    });
    const on = pick(runs, "authz", "cloak-authz", 64);
    const off = pick(runs, "authz", "cloak", 64);
    notes.push(
      `Authorisation on at 64 callers: ${round(on.perSecond / off.perSecond)}× the throughput and ${round(on.cpuUsPerCall / off.cpuUsPerCall)}× the CPU per call of the same service with it off.`,
      `The authorising service listed its caches and was ready in ${round(a.server.startMs / 1000, 1)} s (${JSON.stringify(a.sizes["pvs"])} PVs, ${JSON.stringify(a.sizes["pods"])} pods, ${JSON.stringify(a.sizes["claims"])} claims, ${JSON.stringify(a.sizes["keys"])} keys); RSS ${round(a.rssAfterSyncMb, 0)} MB after the lists, peak ${round(a.peakRssMb, 0)} MB.`,
      `Populating the API server (${a.populated.objects} objects) took ${round(a.populated.seconds, 0)} s.`,
    );
  }
  const machine = await describeMachine();
  return {
    benchmark: "keyservice",
    schema: 1,
    date: o.date,
    tier: "host",
    indicative: false,
    machine,
    versions: {
      node: process.version,
      "grpc-js": await packageVersion("@grpc/grpc-js"),
      pino: await packageVersion("pino"),
      "prom-client": await packageVersion("prom-client"),
      "kube-apiserver": "v1.34.4",
    },
    parameters: { ...P, keyLength: 32, channel: "one client channel per measurement, in its own process" },
    runtimeSeconds: o.runtimeSeconds,
    tables,
    targets,
    notes,
    raw: {
      runs,
      auditLines: o.auditLines,
      answered: o.answered,
      cloakPeakRssMb: o.cloakPeakRssMb,
      baselinePeakRssMb: o.baselinePeakRssMb,
      components: o.components,
      authz: o.authz && {
        startMs: o.authz.server.startMs,
        rssAfterSyncMb: o.authz.rssAfterSyncMb,
        peakRssMb: o.authz.peakRssMb,
        caches: o.authz.sizes,
        populate: { seconds: o.authz.populated.seconds, objects: o.authz.populated.objects, pairs: o.authz.populated.pairs.length },
      },
    },
  };
}

/** bench/keyservice/components.ts in its own process, with the servers' Node flags. */
async function runComponents(): Promise<Record<string, number>> {
  const proc = spawn(process.execPath, [...P.nodeFlags, join(distDir, "components.js")], { stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  proc.stdout.setEncoding("utf8").on("data", (c: string) => (out += c));
  const code = await new Promise<number | null>((r) => proc.once("exit", (c) => r(c)));
  if (code !== 0) throw new Error(`the component benchmark exited ${code}`);
  const parsed = JSON.parse(out.trim()) as { microsecondsPerCall: Record<string, number> };
  process.stderr.write(`components: ${JSON.stringify(parsed.microsecondsPerCall)}\n`);
  return parsed.microsecondsPerCall;
}

/** Spawns a server with the benchmark's Node flags, stdout to `logFile`, until it says it is ready. */
async function startServer(name: ServerName, argv: string[], logFile: string): Promise<Server> {
  const fd = openSync(logFile, "a");
  const t0 = performance.now();
  const proc: ChildProcess = spawn(process.execPath, [...P.nodeFlags, ...argv], { stdio: ["ignore", fd, "inherit"] });
  closeSync(fd);
  const deadline = Date.now() + 300_000;
  for (;;) {
    const ready = (await logLines(logFile)).find((l) => l["msg"] === "key service ready" || l["msg"] === "baseline ready");
    if (ready) {
      const target = ready["endpoint"] ? String(ready["endpoint"]) : `127.0.0.1:${String(ready["port"])}`;
      return { name, target, pid: proc.pid ?? 0, logFile, startMs: performance.now() - t0, stop: () => stopProcess(proc) };
    }
    if (proc.exitCode !== null || Date.now() > deadline) throw new Error(`${name} did not start:\n${(await readFile(logFile, "utf8")).slice(-4000)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function logLines(file: string): Promise<Record<string, unknown>[]> {
  const out: Record<string, unknown>[] = [];
  for (const line of (await readFile(file, "utf8")).split("\n")) {
    if (!line.startsWith("{")) continue;
    try {
      out.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // a line being written
    }
  }
  return out;
}

async function stopProcess(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise((r) => proc.once("exit", r));
  proc.kill("SIGTERM");
  const killer = setTimeout(() => proc.kill("SIGKILL"), 10_000);
  await exited;
  clearTimeout(killer);
}

async function load(target: string, client: { ca: string; cert: string; key: string }, concurrency: number, pairs?: string): Promise<LoadResult> {
  const proc = spawn(
    process.execPath,
    [
      join(distDir, "load.js"),
      `--target=${target}`,
      `--ca=${client.ca}`,
      `--cert=${client.cert}`,
      `--key=${client.key}`,
      `--concurrency=${concurrency}`,
      `--warmup-ms=${P.warmupMs}`,
      `--duration-ms=${P.durationMs}`,
      ...(pairs ? [`--pairs=${pairs}`] : []),
    ],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  let out = "";
  proc.stdout.setEncoding("utf8").on("data", (c: string) => (out += c));
  const code = await new Promise<number | null>((r) => proc.once("exit", (c) => r(c)));
  if (code !== 0) throw new Error(`the load generator exited ${code}`);
  return JSON.parse(out.trim()) as LoadResult;
}

async function packageVersion(name: string): Promise<string> {
  const json = JSON.parse(await readFile(join(packageRoot(), "node_modules", name, "package.json"), "utf8")) as { version: string };
  return json.version;
}

main().catch((err: unknown) => {
  process.stderr.write(`bench-keyservice: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
