/**
 * `make bench-netd`: netd's convergence at 10 to 5 000 nodes against a real API server, tunnel
 * throughput (netd vs plain vs a hand-configured tunnel at its best MTU), and the connectivity
 * gap of a netd restart and of a key rotation. The host tier (wireguard-go) runs here; the
 * kernel-WireGuard throughput runs in the VM tier (bench/netd/guest.ts). Prints the tables and
 * writes bench/results/netd-<date>.json.
 */
import { join } from "node:path";
import { createRunner } from "../../lib/exec.js";
import { createLogger } from "../../lib/log.js";
import { packageRoot } from "../../lib/paths.js";
import { ensureBinaries } from "../../test/apiserver/apiserver.js";
import { describeMachine, TOOLS, toolVersions } from "../lib/metadata.js";
import { renderResult, writeResult, type BenchResult } from "../lib/result.js";
import type { Table } from "../lib/table.js";
import type { Verdict } from "../lib/verdict.js";
import { runInVm } from "../lib/vm.js";
import { measureConvergence, type ConvergenceResult } from "./convergence.js";
import { measureGaps, type GapResult } from "./gaps.js";
import type { GuestPayload } from "./guest.js";
import { startMesh } from "./mesh.js";
import { intFromEnv, listFromEnv } from "../lib/params.js";
import { convergenceNotes, convergenceTables, convergenceTargets, gapTable, gapTargets, rotationTable, throughputTables, throughputTarget } from "./report.js";
import { measureThroughput, type ThroughputResult } from "./throughput.js";
import { apiServerProbes, netdVersions } from "./versions.js";

const SECTIONS = listFromEnv("CLOAK_BENCH_NETD_SECTIONS", ["convergence", "throughput", "gaps", "vm"]);
const PARAMETERS = {
  sections: SECTIONS,
  sizes: listFromEnv("CLOAK_BENCH_NETD_SIZES", ["10", "100", "1000", "5000", "10000"]).map(Number),
  startSamples: intFromEnv("CLOAK_BENCH_NETD_START_SAMPLES", 3),
  changeSamples: intFromEnv("CLOAK_BENCH_NETD_CHANGE_SAMPLES", 7),
  dualStack: (process.env["CLOAK_BENCH_NETD_DUAL_STACK"] ?? "1") !== "0",
  throughputSeconds: intFromEnv("CLOAK_BENCH_NETD_SECONDS", 5),
  sweepRounds: intFromEnv("CLOAK_BENCH_NETD_SWEEP_ROUNDS", 3),
  rounds: intFromEnv("CLOAK_BENCH_NETD_ROUNDS", 7),
  restarts: intFromEnv("CLOAK_BENCH_NETD_RESTARTS", 6),
  rotations: intFromEnv("CLOAK_BENCH_NETD_ROTATIONS", 6),
  vmMemMb: intFromEnv("CLOAK_BENCH_NETD_VM_MEM_MB", 3072),
};

const progress = (line: string): void => void process.stderr.write(`${line}\n`);

async function main(): Promise<void> {
  for (const s of SECTIONS) {
    if (!["convergence", "throughput", "gaps", "vm"].includes(s)) throw new Error(`CLOAK_BENCH_NETD_SECTIONS: unknown section ${JSON.stringify(s)}`);
  }
  if (PARAMETERS.sizes.some((n) => !Number.isInteger(n) || n < 2)) throw new Error("CLOAK_BENCH_NETD_SIZES: node counts of at least 2");
  const date = new Date().toISOString();
  const started = performance.now();
  const run = createRunner({ logger: createLogger({ component: "bench-netd", level: "silent" }) });
  const machine = await describeMachine();
  const binaries = await ensureBinaries(run);
  const versions = await netdVersions(run, apiServerProbes(binaries));
  const sectionSeconds: Record<string, number> = {};
  const timed = async <T>(name: string, f: () => Promise<T>): Promise<T> => {
    const t0 = performance.now();
    try {
      return await f();
    } finally {
      sectionSeconds[name] = Math.round((performance.now() - t0) / 1000);
    }
  };

  let convergence: ConvergenceResult | undefined;
  if (SECTIONS.includes("convergence")) {
    convergence = await timed("convergence", () =>
      measureConvergence({
        sizes: PARAMETERS.sizes,
        startSamples: PARAMETERS.startSamples,
        changeSamples: PARAMETERS.changeSamples,
        dualStack: PARAMETERS.dualStack,
        createConcurrency: 32,
        progress,
      }),
    );
  }

  let throughput: ThroughputResult | undefined;
  let gaps: GapResult | undefined;
  if (SECTIONS.includes("throughput") || SECTIONS.includes("gaps")) {
    const mesh = await startMesh({ implementation: "userspace", endpointFamily: "ipv4" });
    try {
      if (SECTIONS.includes("throughput")) {
        throughput = await timed("throughput", () =>
          measureThroughput(mesh, { seconds: PARAMETERS.throughputSeconds, omitSeconds: 1, sweepRounds: PARAMETERS.sweepRounds, rounds: PARAMETERS.rounds, progress }),
        );
      }
      if (SECTIONS.includes("gaps")) {
        gaps = await timed("gaps", () => measureGaps(mesh, { restarts: PARAMETERS.restarts, rotations: PARAMETERS.rotations, progress }));
      }
    } finally {
      await mesh.close();
    }
  }

  let vm: GuestPayload | undefined;
  if (SECTIONS.includes("vm")) {
    vm = await timed("vm", () =>
      runInVm<GuestPayload>({
        memMb: PARAMETERS.vmMemMb,
        timeoutSeconds: 3600,
        command: [process.execPath, join(packageRoot(), "dist", "bench", "netd", "guest.js")],
      }),
    );
  }
  const qemu = vm?.tier === "vm" ? await toolVersions(run, [TOOLS.qemu]) : {};

  const tables: Table[] = [];
  const targets: Verdict[] = [];
  const notes: string[] = [];
  if (convergence) {
    tables.push(...convergenceTables(convergence));
    targets.push(...convergenceTargets(convergence));
    notes.push(...convergenceNotes(convergence));
  }
  if (throughput) {
    tables.push(...throughputTables(throughput, "host, wireguard-go"));
    targets.push(throughputTarget(throughput, false));
  }
  if (gaps) {
    tables.push(gapTable(gaps));
    const steps = rotationTable(gaps);
    if (steps) tables.push(steps);
    targets.push(...gapTargets(gaps));
  }
  if (vm) {
    const indicative = vm.tier === "vm";
    const where = indicative ? "VM tier, kernel WireGuard, qemu TCG: indicative" : "native kernel WireGuard";
    tables.push(...throughputTables(vm.throughput, where));
    targets.push(throughputTarget(vm.throughput, indicative));
    notes.push(
      indicative
        ? `VM tier: qemu ${qemu["qemu"] ?? "?"} TCG emulates the guest's CPU (${vm.guest.cpuModel}, ${vm.guest.cpus} vCPUs, kernel ${vm.guest.kernel}): its throughput figures are indicative, only their ratios (measured side by side in the same guest) mean something. Setting up the guest's API server and two netds took ${Math.round(vm.setupSeconds)} s.`
        : `Kernel WireGuard ran natively (this kernel has the module): kernel ${vm.guest.kernel}.`,
    );
  }

  const result: BenchResult = {
    benchmark: "netd",
    schema: 1,
    date,
    tier: "host",
    indicative: false,
    machine: { ...machine, loadAverage: (await describeMachine()).loadAverage },
    ...(vm ? { guest: vm.guest } : {}),
    // The guest runs the host's own files (test/vm/run.sh), so its tools are these versions too.
    versions: { ...versions, ...qemu },
    parameters: { ...PARAMETERS, loadAverageAtStart: machine.loadAverage },
    runtimeSeconds: (performance.now() - started) / 1000,
    tables,
    targets,
    notes,
    raw: { convergence, throughput, gaps, vm, sectionSeconds },
  };
  process.stdout.write(renderResult(result));
  const file = await writeResult(result);
  process.stdout.write(`wrote ${file}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench-netd: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
