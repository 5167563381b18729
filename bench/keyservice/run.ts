/**
 * `make bench-keyservice`: GetDataKey throughput and latency over mutual TLS with 1 and 64
 * concurrent callers, cloak's key service against a bare grpc-js baseline with the same
 * derivation and TLS, measured in the same run (alternating, several rounds, medians). Prints a
 * table and writes JSON under bench/results/.
 */
import { spawn } from "node:child_process";
import { openSync, closeSync } from "node:fs";
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { cpus, hostname, loadavg, release, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { packageRoot } from "../../lib/paths.js";
import { resultFileName, resultFilesOf, resultsDir } from "../lib/result.js";
import { procStats } from "../lib/proc-stats.js";
import { round } from "../lib/stats.js";
import { cloakEntry, runCloak } from "../../test/keyservice-harness/index.js";
import type { LoadResult } from "./load.js";

const ROUNDS = Number(process.env["BENCH_ROUNDS"] ?? 3);
const DURATION_MS = Number(process.env["BENCH_DURATION_MS"] ?? 5000);
const WARMUP_MS = Number(process.env["BENCH_WARMUP_MS"] ?? 1000);
const CONCURRENCY = [1, 64] as const;
const IDENTITY = "spiffe://cloak/ns/cloak-system/sa/cloak-csi-node";
/**
 * Node flags for both servers, as the key service's container runs it (keyservice/README.md):
 * V8 otherwise sizes its young generation from the machine's memory and a busy service's RSS
 * grows past 150 MB with garbage it has not yet had reason to collect.
 */
const NODE_FLAGS = (process.env["BENCH_NODE_FLAGS"] ?? "--max-semi-space-size=1").split(" ").filter((f) => f !== "");

interface Server {
  readonly name: "baseline" | "cloak";
  readonly target: string;
  readonly pid: number;
  stop(): Promise<void>;
}

const distDir = join(packageRoot(), "dist", "bench", "keyservice");

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "cloak-ks-bench-"));
  const servers: Server[] = [];
  try {
    const keys = join(dir, "keys");
    await runCloak(["keys", "init", keys, "--client", `node=${IDENTITY}`, "--dns", "localhost", "--ip", "127.0.0.1"]);
    const client = { ca: join(keys, "clients/node/ca.crt"), cert: join(keys, "clients/node/tls.crt"), key: join(keys, "clients/node/tls.key") };
    const auditFile = join(dir, "keyservice.log");
    const cloak = await startCloak(keys, auditFile);
    servers.push(cloak);
    const baseline = await startBaseline(keys);
    servers.push(baseline);

    const runs: { server: string; concurrency: number; round: number; result: LoadResult; cpuUsPerCall: number; rssMb: number }[] = [];
    for (let round = 1; round <= ROUNDS; round++) {
      for (const concurrency of CONCURRENCY) {
        // Alternate the order so that neither server always runs on a warmer machine.
        const order = round % 2 === 1 ? [baseline, cloak] : [cloak, baseline];
        for (const server of order) {
          const cpuBefore = (await procStats(server.pid)).cpuSeconds;
          const result = await load(server.target, client, concurrency);
          // Server CPU per answered call: what each request costs the server, whatever else
          // the machine is doing (the throughput figures are only as quiet as the machine).
          const after = await procStats(server.pid);
          const cpuUsPerCall = (after.cpuSeconds - cpuBefore) / result.answered * 1e6;
          const rssMb = after.rssMb;
          runs.push({ server: server.name, concurrency, round, result, cpuUsPerCall, rssMb });
          process.stderr.write(
            `round ${round} ${server.name.padEnd(8)} c=${String(concurrency).padStart(2)}: ${result.perSecond.toFixed(0)}/s p50 ${result.p50Ms.toFixed(3)} ms p99 ${result.p99Ms.toFixed(3)} ms, server ${cpuUsPerCall.toFixed(0)} µs CPU/call, RSS ${rssMb.toFixed(0)} MB${result.errors ? ` errors ${result.errors}` : ""}\n`,
          );
        }
      }
    }
    const peakRssMb = (await procStats(cloak.pid)).peakRssMb;
    const baselinePeakRssMb = (await procStats(baseline.pid)).peakRssMb;
    await cloak.stop();
    await baseline.stop();

    // One audit line per request: the log must count exactly the calls that were answered.
    const answered = runs.filter((r) => r.server === "cloak").reduce((sum, r) => sum + r.result.answered, 0);
    const auditLines = (await readFile(auditFile, "utf8")).split("\n").filter((l) => l.includes('"msg":"GetDataKey"')).length;

    const summary = CONCURRENCY.map((concurrency) => {
      const of = (name: string) => runs.filter((r) => r.server === name && r.concurrency === concurrency);
      const pick = (name: string) => ({ ...median(of(name).map((r) => r.result)), cpuUsPerCall: middle(of(name).map((r) => r.cpuUsPerCall)) });
      return { concurrency, baseline: pick("baseline"), cloak: pick("cloak") };
    });
    const at64 = summary.find((s) => s.concurrency === 64);
    const at1 = summary.find((s) => s.concurrency === 1);
    const ratio64 = at64 ? at64.cloak.perSecond / at64.baseline.perSecond : Number.NaN;
    const targets = {
      throughputRatioAt64: { target: ">= 0.9", value: round(ratio64), met: ratio64 >= 0.9 },
      p99At1Ms: { target: "< 1", value: round(at1?.cloak.p99Ms ?? Number.NaN), met: (at1?.cloak.p99Ms ?? Infinity) < 1 },
      peakRssMb: { target: "< 100", value: round(peakRssMb), met: peakRssMb < 100 },
      auditLinesPerRequest: { target: "== 1", value: round(auditLines / answered), met: auditLines === answered },
    };

    const lines = [
      "",
      "GetDataKey over mutual TLS (one channel; medians of " + `${ROUNDS} rounds of ${DURATION_MS / 1000} s)`,
      "",
      "callers  server     req/s    p50 ms   p99 ms   server CPU µs/call",
      ...summary.flatMap((s) =>
        (["baseline", "cloak"] as const).map(
          (name) =>
            `${String(s.concurrency).padStart(7)}  ${name.padEnd(8)} ${s[name].perSecond.toFixed(0).padStart(7)}  ${s[name].p50Ms.toFixed(3).padStart(7)}  ${s[name].p99Ms.toFixed(3).padStart(7)}   ${s[name].cpuUsPerCall.toFixed(0).padStart(6)}`,
        ),
      ),
      "",
      `cloak / baseline throughput at 64 callers: ${ratio64.toFixed(3)} (target >= 0.9) ${targets.throughputRatioAt64.met ? "met" : "MISSED"}`,
      `cloak p99 at 1 caller: ${(at1?.cloak.p99Ms ?? Number.NaN).toFixed(3)} ms (target < 1 ms) ${targets.p99At1Ms.met ? "met" : "MISSED"}`,
      `cloak service peak RSS: ${peakRssMb.toFixed(1)} MB (target < 100 MB) ${targets.peakRssMb.met ? "met" : "MISSED"}; baseline's ${baselinePeakRssMb.toFixed(1)} MB`,
      `server CPU per call at 64 callers, cloak / baseline: ${(at64 ? at64.cloak.cpuUsPerCall / at64.baseline.cpuUsPerCall : Number.NaN).toFixed(3)}`,
      `machine load average when done: ${loadavg().map((l) => l.toFixed(2)).join(" ")} on ${cpus().length} CPUs`,
      `audit lines ${auditLines} for ${answered} answered calls ${targets.auditLinesPerRequest.met ? "(one per request)" : "MISMATCH"}`,
      "",
    ];
    process.stdout.write(lines.join("\n"));

    const now = new Date();
    const report = {
      benchmark: "keyservice",
      date: now.toISOString(),
      machine: { hostname: hostname(), cpus: cpus().length, cpuModel: cpus()[0]?.model, memoryMb: Math.round(totalmem() / 1048576), kernel: release() },
      versions: { node: process.version, grpcJs: await packageVersion("@grpc/grpc-js"), pino: await packageVersion("pino"), promClient: await packageVersion("prom-client") },
      parameters: { rounds: ROUNDS, durationMs: DURATION_MS, warmupMs: WARMUP_MS, keyLength: 32, channel: "one client channel per measurement, in its own process" },
      summary,
      targets,
      peakRssMb: round(peakRssMb),
      baselinePeakRssMb: round(baselinePeakRssMb),
      nodeFlags: NODE_FLAGS,
      loadAverage: loadavg(),
      runs,
    };
    const outDir = resultsDir();
    await mkdir(outDir, { recursive: true });
    const file = join(outDir, resultFileName("keyservice", now.toISOString()));
    await writeFile(file, `${JSON.stringify(report, null, 2)}\n`);
    // Only the latest result is kept, as for every benchmark (bench/lib/result.ts).
    const older = resultFilesOf("keyservice", await readdir(outDir)).filter((name) => join(outDir, name) !== file);
    for (const name of older) await rm(join(outDir, name));
    process.stdout.write(`wrote ${file}\n`);
  } finally {
    for (const server of servers) await server.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

async function startCloak(keys: string, auditFile: string): Promise<Server> {
  // The audit log goes to a file, as a container runtime would take it from the pipe.
  const fd = openSync(auditFile, "a");
  const proc = spawn(
    process.execPath,
    [
      ...NODE_FLAGS,
      cloakEntry(),
      "keyservice",
      "--listen",
      "127.0.0.1:0",
      "--metrics-listen",
      "127.0.0.1:0",
      "--master-secret",
      join(keys, "master-secret"),
      "--salt",
      join(keys, "salt"),
      "--tls-cert",
      join(keys, "server/tls.crt"),
      "--tls-key",
      join(keys, "server/tls.key"),
      "--client-ca",
      join(keys, "server/ca.crt"),
      "--allow",
      IDENTITY,
    ],
    { stdio: ["ignore", fd, "inherit"] },
  );
  closeSync(fd);
  const deadline = Date.now() + 20_000;
  for (;;) {
    const ready = (await readFile(auditFile, "utf8")).split("\n").find((l) => l.includes('"msg":"key service ready"'));
    if (ready) {
      const endpoint = String((JSON.parse(ready) as { endpoint: string }).endpoint);
      return { name: "cloak", target: endpoint, pid: proc.pid ?? 0, stop: () => stopProcess(proc) };
    }
    if (proc.exitCode !== null || Date.now() > deadline) throw new Error(`cloak keyservice did not start:\n${await readFile(auditFile, "utf8")}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function startBaseline(keys: string): Promise<Server> {
  const proc = spawn(process.execPath, [...NODE_FLAGS, join(distDir, "baseline-server.js"), keys], { stdio: ["ignore", "pipe", "inherit"] });
  const line = await new Promise<string>((resolve, reject) => {
    let out = "";
    proc.stdout.setEncoding("utf8").on("data", (c: string) => {
      out += c;
      if (out.includes("\n")) resolve(out.split("\n")[0] ?? "");
    });
    proc.once("exit", (code) => reject(new Error(`the baseline server exited ${code}`)));
  });
  const port = (JSON.parse(line) as { port: number }).port;
  return { name: "baseline", target: `127.0.0.1:${port}`, pid: proc.pid ?? 0, stop: () => stopProcess(proc) };
}

async function stopProcess(proc: ReturnType<typeof spawn>): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise((r) => proc.once("exit", r));
  proc.kill("SIGTERM");
  const killer = setTimeout(() => proc.kill("SIGKILL"), 10_000);
  await exited;
  clearTimeout(killer);
}

async function load(target: string, client: { ca: string; cert: string; key: string }, concurrency: number): Promise<LoadResult> {
  const proc = spawn(
    process.execPath,
    [
      join(distDir, "load.js"),
      "--target",
      target,
      "--ca",
      client.ca,
      "--cert",
      client.cert,
      "--key",
      client.key,
      "--concurrency",
      String(concurrency),
      "--warmup-ms",
      String(WARMUP_MS),
      "--duration-ms",
      String(DURATION_MS),
    ],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  let out = "";
  proc.stdout.setEncoding("utf8").on("data", (c: string) => (out += c));
  const code = await new Promise<number | null>((r) => proc.once("exit", (c) => r(c)));
  if (code !== 0) throw new Error(`the load generator exited ${code}`);
  return JSON.parse(out.trim()) as LoadResult;
}

function middle(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

function median(results: LoadResult[]): LoadResult {
  const mid = <T>(values: T[], by: (v: T) => number): number => {
    const sorted = values.map(by).sort((a, b) => a - b);
    return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
  };
  return {
    calls: mid(results, (r) => r.calls),
    seconds: mid(results, (r) => r.seconds),
    perSecond: mid(results, (r) => r.perSecond),
    p50Ms: mid(results, (r) => r.p50Ms),
    p99Ms: mid(results, (r) => r.p99Ms),
    errors: results.reduce((s, r) => s + r.errors, 0),
    answered: results.reduce((s, r) => s + r.answered, 0),
  };
}

async function packageVersion(name: string): Promise<string> {
  const json = JSON.parse(await readFile(join(packageRoot(), "node_modules", name, "package.json"), "utf8")) as { version: string };
  return json.version;
}

main().catch((err: unknown) => {
  process.stderr.write(`bench-keyservice: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
