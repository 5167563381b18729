/**
 * The VM-tier half of `make bench-netd`: netd's kernel-WireGuard tunnel vs a hand-configured
 * kernel tunnel vs the plain path, run by bench/netd/run.ts inside test/vm/run.sh (natively on a
 * kernel with WireGuard, else Debian's kernel under qemu TCG, where every figure is indicative).
 * Everything (API server, etcd, testbed, both netds, iperf3) runs in the guest; the figures go
 * back to the host half as one marked line (bench/lib/vm.ts).
 */
import { createRunner } from "../../lib/exec.js";
import { createLogger } from "../../lib/log.js";
import { describeMachine, type Machine } from "../lib/metadata.js";
import { emitGuestResult, guestTier } from "../lib/vm.js";
import { startMesh } from "./mesh.js";
import { intFromEnv } from "../lib/params.js";
import { measureThroughput, type ThroughputResult } from "./throughput.js";
import { netdVersions } from "./versions.js";

export interface GuestPayload {
  readonly tier: "native" | "vm";
  readonly guest: Machine;
  readonly versions: Record<string, string>;
  readonly throughput: ThroughputResult;
  /** Seconds the guest spent starting the API server and both netds, and measuring. */
  readonly setupSeconds: number;
  readonly runtimeSeconds: number;
}

const progress = (line: string): void => void process.stderr.write(`${line}\n`);

async function main(): Promise<void> {
  // Refuses to run outside test/vm/run.sh: kernel WireGuard is what this half measures.
  const tier = guestTier();
  const started = performance.now();
  const run = createRunner({ logger: createLogger({ component: "bench-netd", level: "silent" }) });
  const versions = await netdVersions(run);
  progress(`bench-netd guest (${tier}): starting the API server, the testbed and two netds on kernel WireGuard`);
  const mesh = await startMesh({ implementation: "kernel", endpointFamily: "ipv4" });
  const setupSeconds = (performance.now() - started) / 1000;
  try {
    const throughput = await measureThroughput(mesh, {
      seconds: intFromEnv("CLOAK_BENCH_NETD_VM_SECONDS", 5),
      omitSeconds: 1,
      sweepRounds: intFromEnv("CLOAK_BENCH_NETD_VM_SWEEP_ROUNDS", 2),
      rounds: intFromEnv("CLOAK_BENCH_NETD_VM_ROUNDS", 5),
      progress,
    });
    const payload: GuestPayload = { tier, guest: await describeMachine(), versions, throughput, setupSeconds, runtimeSeconds: (performance.now() - started) / 1000 };
    emitGuestResult(payload);
  } finally {
    await mesh.close();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench-netd guest: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
