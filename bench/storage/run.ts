/**
 * `make bench-storage`: stage latency (cold and warm, cloak vs plain), the cold-stage KDF cost
 * (cloak's pbkdf2 vs argon2id), fio through dm-crypt vs the raw device (with and without the
 * workqueue bypass), and 50 volumes staged back to back. The measuring half (guest.ts) runs in
 * the VM tier; this half records the machine, prints the tables and writes the JSON under
 * bench/results/.
 */
import { join } from "node:path";
import { createRunner, type Runner } from "../../lib/exec.js";
import { createLogger } from "../../lib/log.js";
import { packageRoot } from "../../lib/paths.js";
import { describeMachine, TOOLS, toolVersions } from "../lib/metadata.js";
import { renderResult, writeResult, type BenchResult } from "../lib/result.js";
import { runInVm } from "../lib/vm.js";
import { cipherTable, opensslCipherBenchmark, parseOpensslSpeed, type CipherFigures } from "./cipher.js";
import type { GuestPayload } from "./guest.js";
import { headerCheckTable } from "./header-check.js";
import { hostCommandsTable, measureHostCommands } from "./host-commands.js";

/** The guest's RAM holds the fio file and every volume's written blocks (tmpfs). */
const VM_MEM_MB = Number(process.env["CLOAK_BENCH_VM_MEM_MB"] ?? 3072);

async function main(): Promise<void> {
  const date = new Date().toISOString();
  const started = performance.now();
  const run = createRunner({ logger: createLogger({ component: "bench-storage", level: "silent" }) });
  const machine = await describeMachine();
  // The real CPU's cipher speed, for comparison with the guest's (measured before qemu runs).
  const hostCipher: CipherFigures = { ...optional("opensslMiBps", await hostOpensslMiBps(run)) };
  const hostCommands = await measureHostCommands(run);
  const payload = await runInVm<GuestPayload>({
    memMb: VM_MEM_MB,
    timeoutSeconds: 3600,
    command: [process.execPath, join(packageRoot(), "dist", "bench", "storage", "guest.js")],
  });
  const hostVersions = payload.tier === "vm" ? await toolVersions(run, [TOOLS.qemu]) : {};
  const result: BenchResult = {
    benchmark: "storage",
    schema: 1,
    date,
    tier: payload.tier,
    indicative: payload.tier === "vm",
    // The load average at the end says how busy the shared machine was while it ran.
    machine: { ...machine, loadAverage: (await describeMachine()).loadAverage },
    ...(payload.tier === "vm" ? { guest: payload.guest } : {}),
    versions: { ...payload.versions, ...hostVersions },
    parameters: { ...payload.parameters, vmMemMb: payload.tier === "vm" ? VM_MEM_MB : undefined, cryptoDriver: payload.cryptoDriver },
    runtimeSeconds: (performance.now() - started) / 1000,
    tables: [
      ...payload.tables,
      ...(payload.raw.cipher ? [cipherTable(payload.raw.cipher, payload.tier === "vm" ? hostCipher : undefined, payload.tier === "vm")] : []),
      ...(payload.tier === "vm" ? [hostCommandsTable(hostCommands, payload.raw.stage?.samples)] : []),
      ...(payload.raw.headerCheck
        ? [
            headerCheckTable(
              payload.tier === "vm"
                ? [["guest (emulated CPU)", payload.raw.headerCheck], ["host (real CPU)", hostCommands.headerCheck]]
                : [["this kernel", payload.raw.headerCheck]],
              payload.tier === "vm",
            ),
          ]
        : []),
    ],
    targets: payload.targets,
    notes: [
      ...(payload.tier === "vm"
        ? [
            `VM tier: qemu ${hostVersions["qemu"] ?? "?"} TCG emulates the guest's CPU (${payload.guest.cpuModel}, ${payload.guest.cpus} vCPUs) on ${machine.cpuModel}: ` +
              "every figure is indicative. Ratios measured side by side in the same guest are the meaningful part; absolute times are many times a real machine's.",
          ]
        : []),
      `dm-crypt cipher implementation in the ${payload.tier === "vm" ? "guest" : "kernel"}: ${payload.cryptoDriver ? `${payload.cryptoDriver.driver} (${payload.cryptoDriver.module})` : "unknown"}`,
      ...payload.notes,
    ],
    raw: { ...payload.raw, hostCipher, hostCommands, guestRuntimeSeconds: payload.runtimeSeconds },
  };
  process.stdout.write(renderResult(result));
  const file = await writeResult(result);
  process.stdout.write(`wrote ${file}\n`);
}

async function hostOpensslMiBps(run: Runner): Promise<number | undefined> {
  try {
    return parseOpensslSpeed((await run(opensslCipherBenchmark(2))).stdout);
  } catch {
    return undefined;
  }
}

function optional<K extends string>(key: K, value: number | undefined): Partial<Record<K, number>> {
  return value === undefined ? {} : ({ [key]: value } as Record<K, number>);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench-storage: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
