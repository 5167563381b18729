/**
 * The measuring half of `make bench-storage`, run by bench/storage/run.ts inside the VM tier
 * (test/vm/run.sh: dm-crypt natively where the kernel has it, else Debian's kernel under qemu).
 * Runs the sections, prints progress on stderr, and hands the figures to the host half as one
 * marked line (bench/lib/vm.ts). CLOAK_BENCH_* variables size it (see BENCHMARKS.md).
 */
import { mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createRunner, type Runner } from "../../lib/exec.js";
import { createLogger } from "../../lib/log.js";
import { createKeyDir } from "../../test/support/key-dir.js";
import { scrubTree } from "../../test/support/scrub.js";
import { describeMachine, TOOLS, toolVersions, type Machine } from "../lib/metadata.js";
import { intFromEnv } from "../lib/params.js";
import { median } from "../lib/stats.js";
import type { Table } from "../lib/table.js";
import { judge, type Verdict } from "../lib/verdict.js";
import { guestTier, emitGuestResult } from "../lib/vm.js";
import { startCloak, startPlain, type Driver } from "./drivers.js";
import { kernelCipherBenchmark, opensslCipherBenchmark, parseKernelCipherBenchmark, parseOpensslSpeed, type CipherFigures } from "./cipher.js";
import { measureHeaderCheck, withCloakDevice, type HeaderCheckTimes } from "./header-check.js";
import { fioTable, measureFio, summarizeFio, type FioResult } from "./fio-bench.js";
import { kdfSpeedup, kdfTable, measureKdf, type KdfResult } from "./kdf.js";
import { manyVolumesTable, measureManyVolumes, type ManyVolumesResult } from "./many-volumes.js";
import { parseProcCrypto, preferredDriver, type CryptoDriver } from "./proc-crypto.js";
import { breakdownTable, measureStageLatency, stageRatios, stageTable, type StageSamples, type StageSample } from "./stage-latency.js";
import { measureWrapStage, wrapStageTable, type WrapStageResult } from "./wrap-stage.js";

const MiB = 1024 * 1024;

/** What the guest hands to the host half. */
export interface GuestPayload {
  readonly tier: "native" | "vm";
  readonly guest: Machine;
  readonly versions: Record<string, string>;
  readonly cryptoDriver: CryptoDriver | undefined;
  readonly parameters: Record<string, unknown>;
  readonly tables: Table[];
  readonly targets: Verdict[];
  readonly notes: string[];
  readonly raw: {
    stage?: { samples: StageSamples; warmup: Record<string, StageSample> };
    /** The header check alone, luksDump vs in process, on a loop device here. */
    headerCheck?: HeaderCheckTimes;
    kdf?: KdfResult;
    fio?: FioResult;
    manyVolumes?: ManyVolumesResult;
    wrap?: WrapStageResult;
    cipher?: CipherFigures;
    /** How long each section took, for sizing the benchmark. */
    sectionSeconds?: Record<string, number>;
  };
  readonly runtimeSeconds: number;
}

const PARAMETERS = {
  coldSamples: intFromEnv("CLOAK_BENCH_COLD_SAMPLES", 5),
  warmSamples: intFromEnv("CLOAK_BENCH_WARM_SAMPLES", 7),
  stageVolumeMiB: intFromEnv("CLOAK_BENCH_VOLUME_MIB", 256),
  kdfSamples: intFromEnv("CLOAK_BENCH_KDF_SAMPLES", 5),
  argonSamples: intFromEnv("CLOAK_BENCH_ARGON_SAMPLES", 3),
  fioDataMiB: intFromEnv("CLOAK_BENCH_FIO_MIB", 512),
  fioRounds: intFromEnv("CLOAK_BENCH_FIO_ROUNDS", 3),
  fioSeconds: intFromEnv("CLOAK_BENCH_FIO_SECONDS", 2),
  fioRampSeconds: intFromEnv("CLOAK_BENCH_FIO_RAMP_SECONDS", 1),
  manyVolumes: intFromEnv("CLOAK_BENCH_MANY_VOLUMES", 50),
  manyVolumeMiB: intFromEnv("CLOAK_BENCH_MANY_VOLUME_MIB", 64),
  wrapColdSamples: intFromEnv("CLOAK_BENCH_WRAP_COLD_SAMPLES", 5),
  wrapWarmSamples: intFromEnv("CLOAK_BENCH_WRAP_WARM_SAMPLES", 7),
  sections: (process.env["CLOAK_BENCH_SECTIONS"] ?? "stage,kdf,many,wrap,fio,cipher").split(",").map((s) => s.trim()),
};

const progress = (line: string): void => void process.stderr.write(`${line}\n`);

async function main(): Promise<void> {
  const tier = guestTier();
  const indicative = tier === "vm";
  const started = performance.now();
  const run = createRunner({ logger: createLogger({ component: "bench-storage", level: "silent" }) });
  const root = await mkdtemp(join(tmpdir(), "cloak-bench-storage-"));
  const drivers: Driver[] = [];
  const tables: Table[] = [];
  const targets: Verdict[] = [];
  const notes: string[] = [];
  const raw: GuestPayload["raw"] = {};
  const sectionSeconds: Record<string, number> = {};
  const wants = (section: string): boolean => PARAMETERS.sections.includes(section);
  /** Runs a wanted section and records how long it took. */
  const section = async (name: string, body: () => Promise<void>): Promise<void> => {
    if (!wants(name)) return;
    const begun = performance.now();
    await body();
    sectionSeconds[name] = Math.round((performance.now() - begun) / 100) / 10;
  };
  try {
    const keyDir = await createKeyDir(join(root, "keys"));
    let coldStageP50 = Number.NaN;

    if (wants("stage") || wants("many")) {
      drivers.push(await startCloak(join(root, "cloak"), keyDir));
      drivers.push(await startPlain(join(root, "plain")));
    }
    const [cloak, plain] = drivers;

    await section("stage", async () => {
      if (!cloak || !plain) throw new Error("the plugins did not start");
      progress("== stage latency: cold and warm, cloak vs plain");
      const stage = await measureStageLatency({
        drivers: [cloak, plain],
        coldSamples: PARAMETERS.coldSamples,
        warmSamples: PARAMETERS.warmSamples,
        volumeBytes: PARAMETERS.stageVolumeMiB * MiB,
        progress,
      });
      raw.stage = stage;
      tables.push(stageTable(stage.samples, indicative), breakdownTable(stage.samples, indicative));
      const ratios = stageRatios(stage.samples);
      targets.push(judge({ id: "warmStageRatio", what: "warm stage, encrypted / plain (p50)", op: "<=", bound: 1.15, indicative }, ratios.warm));
      // A count, not a time: the same on any CPU.
      targets.push(judge({ id: "warmStageExtraCommands", what: "warm stage, external commands cloak runs beyond plain's (median)", op: "<=", bound: 1 }, extraCommands(stage.samples)));
      notes.push(...stageNotes(stage.samples));
      coldStageP50 = median(stage.samples.cold.cloak.map((s) => s.stage.clientMs));
      progress("== the header check alone: luksDump vs in process");
      raw.headerCheck = await withCloakDevice(run, ({ device }) => measureHeaderCheck(run, device, PARAMETERS.warmSamples));
    });

    await section("kdf", async () => {
      progress("== cold-stage KDF: cloak's pbkdf2 vs argon2id at cryptsetup's defaults");
      await mkdir(join(root, "kdf"));
      const kdf = await measureKdf({ run, dir: join(root, "kdf"), cloakSamples: PARAMETERS.kdfSamples, argonSamples: PARAMETERS.argonSamples, progress });
      raw.kdf = kdf;
      tables.push(kdfTable(kdf, coldStageP50, indicative));
      targets.push(judge({ id: "kdfSpeedup", what: "cold-stage format + open, argon2id / cloak's pbkdf2", op: ">=", bound: 5, unit: "×", indicative }, kdfSpeedup(kdf)));
    });

    await section("many", async () => {
      if (!cloak) throw new Error("the plugin did not start");
      progress(`== ${PARAMETERS.manyVolumes} volumes staged back to back`);
      const many = await measureManyVolumes({ cloak, count: PARAMETERS.manyVolumes, volumeBytes: PARAMETERS.manyVolumeMiB * MiB, progress });
      raw.manyVolumes = many;
      tables.push(manyVolumesTable(many, indicative));
    });
    for (const driver of drivers.splice(0)) await driver.stop();

    await section("wrap", async () => {
      progress("== stage through the wrapper vs the block test driver alone");
      await mkdir(join(root, "wrap"));
      const wrap = await measureWrapStage({
        root: join(root, "wrap"),
        keyDir,
        coldSamples: PARAMETERS.wrapColdSamples,
        warmSamples: PARAMETERS.wrapWarmSamples,
        volumeBytes: PARAMETERS.stageVolumeMiB * MiB,
        progress,
      });
      raw.wrap = wrap;
      tables.push(wrapStageTable(wrap, indicative));
    });

    await section("fio", async () => {
      progress("== fio: raw loop vs dm-crypt vs dm-crypt with the workqueue bypass");
      await mkdir(join(root, "fio"));
      const fio = await measureFio({
        run,
        dir: join(root, "fio"),
        dataBytes: PARAMETERS.fioDataMiB * MiB,
        rounds: PARAMETERS.fioRounds,
        runtimeSeconds: PARAMETERS.fioSeconds,
        rampSeconds: PARAMETERS.fioRampSeconds,
        progress,
      });
      raw.fio = fio;
      const summary = summarizeFio(fio);
      tables.push(fioTable(summary, { indicative, rounds: PARAMETERS.fioRounds, runtimeSeconds: PARAMETERS.fioSeconds, dataBytes: PARAMETERS.fioDataMiB * MiB }));
      for (const shape of summary) {
        const id = `fio ${shape.shape}`;
        targets.push(judge({ id: camel(id), what: `fio ${shape.shape}, dm-crypt / raw (MiB/s)`, op: ">=", bound: 0.9, indicative }, shape.encryptedOverRaw));
      }
    });

    await section("cipher", async () => {
      progress("== AES-256-XTS without a disk: the kernel's crypto API and OpenSSL");
      raw.cipher = await measureCipher(run);
    });

    const payload: GuestPayload = {
      tier,
      guest: await describeMachine(),
      versions: await toolVersions(run, [TOOLS.cryptsetup, TOOLS.fio, TOOLS.mke2fs, TOOLS.utilLinux]),
      cryptoDriver: preferredDriver(parseProcCrypto(await readFile("/proc/crypto", "utf8")), "xts(aes)"),
      parameters: { ...PARAMETERS },
      tables,
      targets,
      notes,
      raw: { ...raw, sectionSeconds },
      runtimeSeconds: (performance.now() - started) / 1000,
    };
    emitGuestResult(payload);
  } finally {
    for (const driver of drivers) await driver.stop().catch(() => undefined);
    await scrubTree(root);
    await rm(root, { recursive: true, force: true });
  }
}

/**
 * The first kernel run loads the cipher modules (seconds in the VM) and reads as nearly zero:
 * run it twice and keep the second. A kernel without algif_skcipher has no figure.
 */
async function measureCipher(run: Runner): Promise<CipherFigures> {
  let kernel: CipherFigures["kernel"];
  for (let i = 0; i < 2; i++) {
    const result = await run({ ...kernelCipherBenchmark(), okExitCodes: [0, 1] });
    kernel = parseKernelCipherBenchmark(result.stdout);
  }
  const opensslMiBps = parseOpensslSpeed((await run(opensslCipherBenchmark(2))).stdout);
  progress(`  kernel: encrypt ${kernel?.encryptMiBps ?? "?"} MiB/s, decrypt ${kernel?.decryptMiBps ?? "?"} MiB/s; OpenSSL ${opensslMiBps?.toFixed(1) ?? "?"} MiB/s`);
  return { ...(kernel ? { kernel } : {}), ...(opensslMiBps !== undefined ? { opensslMiBps } : {}) };
}

function extraCommands(samples: StageSamples): number {
  const count = (list: readonly StageSample[]): number => median(list.map((s) => s.stage.breakdown.commands.length));
  return count(samples.warm.cloak) - count(samples.warm.plain);
}

/** What the breakdown says about the warm stage, in words, for the result's notes. */
function stageNotes(samples: StageSamples): string[] {
  const execMs = (list: readonly StageSample[]): number => median(list.map((s) => s.stage.breakdown.commands.reduce((sum, c) => sum + c.ms, 0)));
  const count = (list: readonly StageSample[]): number => median(list.map((s) => s.stage.breakdown.commands.length));
  const total = (list: readonly StageSample[]): number => median(list.map((s) => s.stage.clientMs));
  const { cloak, plain } = samples.warm;
  const extraMs = execMs(cloak) - execMs(plain);
  const diff = total(cloak) - total(plain);
  return [
    `warm stage: cloak runs ${count(cloak)} external commands, the plain baseline ${count(plain)}; ` +
      `cloak's commands take ${extraMs.toFixed(0)} ms more (median), ${diff > 0 ? ((extraMs / diff) * 100).toFixed(0) : "–"} % of the ${diff.toFixed(0)} ms difference`,
  ];
}

function camel(text: string): string {
  return text.replace(/[^a-zA-Z0-9]+(.)?/g, (_, c: string | undefined) => (c ? c.toUpperCase() : "")).replace(/^./, (c) => c.toLowerCase());
}

main().catch((err: unknown) => {
  process.stderr.write(`bench-storage (guest): ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
