import { randomBytes, randomUUID } from "node:crypto";
import { open, rm, truncate } from "node:fs/promises";
import { join } from "node:path";
import type { Command, Runner } from "../../lib/exec.js";
import * as cryptsetup from "../../csi/luks/cryptsetup.js";
import { LUKS_FORMAT } from "../../csi/luks/policy.js";
import * as losetup from "../../csi/tools/losetup.js";
import { median, summarize, type Summary } from "../lib/stats.js";
import type { Table } from "../lib/table.js";

/**
 * The key-derivation cost of a cold stage: `luksFormat` then `open`, with cloak's format
 * (pbkdf2, 1000 iterations: the passphrase is 256 random bits) against the same format with
 * cryptsetup's default KDF, argon2id benchmarked to 2 s per unlock and up to 1 GiB, which is
 * what Constellation (argon2id, 2 s) and ceph-csi (argon2id, 32 MiB) pay at every stage.
 */
export type KdfName = "pbkdf2 (cloak)" | "argon2id (cryptsetup default)";

/** cloak's luksFormat with its KDF flags replaced by `--pbkdf argon2id` and nothing else changed. */
export function withArgon2idDefaults(command: Command): Command {
  const args: string[] = [];
  for (let i = 0; i < command.args.length; i++) {
    const arg = command.args[i] ?? "";
    if (arg === "--pbkdf") {
      args.push("--pbkdf", "argon2id");
      i++;
    } else if (arg === "--pbkdf-force-iterations") {
      i++;
    } else {
      args.push(arg);
    }
  }
  if (!args.includes("argon2id")) throw new Error("cloak's luksFormat names no --pbkdf to replace");
  return { ...command, args };
}

export interface KdfSample {
  readonly formatMs: number;
  readonly openMs: number;
}

export interface KdfResult {
  readonly samples: Record<KdfName, KdfSample[]>;
  /** The argon2id parameters cryptsetup chose on this machine (from the keyslot). */
  readonly argon2id: { time?: number; memoryKiB?: number; cpus?: number };
}

export async function measureKdf(options: { run: Runner; dir: string; cloakSamples: number; argonSamples: number; progress: (line: string) => void }): Promise<KdfResult> {
  const { run, dir, progress } = options;
  const file = join(dir, "kdf.img");
  await (await open(file, "w")).close();
  await truncate(file, 64 * 1024 * 1024);
  const device = (await run(losetup.attach(file, false))).stdout.trim();
  const passphrase = randomBytes(32);
  const samples: Record<KdfName, KdfSample[]> = { "pbkdf2 (cloak)": [], "argon2id (cryptsetup default)": [] };
  const argon2id: KdfResult["argon2id"] = {};
  const timed = async (command: Command): Promise<number> => {
    const started = performance.now();
    await run(command);
    return performance.now() - started;
  };
  try {
    const rounds = Math.max(options.cloakSamples, options.argonSamples);
    for (let i = 1; i <= rounds; i++) {
      const order: KdfName[] = i % 2 === 1 ? ["pbkdf2 (cloak)", "argon2id (cryptsetup default)"] : ["argon2id (cryptsetup default)", "pbkdf2 (cloak)"];
      for (const kdf of order) {
        const argon = kdf !== "pbkdf2 (cloak)";
        if (i > (argon ? options.argonSamples : options.cloakSamples)) continue;
        const format = cryptsetup.luksFormat({ device, uuid: randomUUID(), passphrase, integrity: false });
        const formatMs = await timed(argon ? withArgon2idDefaults(format) : format);
        if (argon && argon2id.time === undefined) Object.assign(argon2id, await argonParameters(run, device));
        const openMs = await timed(cryptsetup.luksOpen({ device, name: "cloak-bench-kdf", passphrase, bypassWorkqueues: false }));
        await run(cryptsetup.luksClose("cloak-bench-kdf"));
        samples[kdf].push({ formatMs, openMs });
        progress(`  ${kdf} ${i}: format ${formatMs.toFixed(0)} ms, open ${openMs.toFixed(0)} ms`);
      }
    }
  } finally {
    passphrase.fill(0);
    await run({ file: "cryptsetup", args: ["close", "cloak-bench-kdf"], okExitCodes: [4] }).catch(() => undefined);
    await run(losetup.detach(device));
    await rm(file, { force: true });
  }
  return { samples, argon2id };
}

async function argonParameters(run: Runner, device: string): Promise<KdfResult["argon2id"]> {
  const dump = JSON.parse((await run(cryptsetup.luksDumpJson(device))).stdout) as { keyslots?: Record<string, { kdf?: Record<string, unknown> }> };
  const kdf = Object.values(dump.keyslots ?? {})[0]?.kdf ?? {};
  return { time: Number(kdf["time"]), memoryKiB: Number(kdf["memory"]), cpus: Number(kdf["cpus"]) };
}

export function kdfSummary(result: KdfResult): Record<KdfName, { format: Summary; open: Summary; total: Summary }> {
  const of = (list: readonly KdfSample[]) => ({
    format: summarize(list.map((s) => s.formatMs)),
    open: summarize(list.map((s) => s.openMs)),
    total: summarize(list.map((s) => s.formatMs + s.openMs)),
  });
  return { "pbkdf2 (cloak)": of(result.samples["pbkdf2 (cloak)"]), "argon2id (cryptsetup default)": of(result.samples["argon2id (cryptsetup default)"]) };
}

/** How many times faster cloak's format + open is than argon2id's, on medians. */
export function kdfSpeedup(result: KdfResult): number {
  const total = (list: readonly KdfSample[]): number => median(list.map((s) => s.formatMs + s.openMs));
  return total(result.samples["argon2id (cryptsetup default)"]) / total(result.samples["pbkdf2 (cloak)"]);
}

export function kdfTable(result: KdfResult, coldStageP50Ms: number, indicative: boolean): Table {
  const summary = kdfSummary(result);
  const rows = (Object.keys(summary) as KdfName[]).map((kdf) => {
    const s = summary[kdf];
    return [kdf, s.total.n, s.format.p50, s.open.p50, s.total.p50, s.total.max];
  });
  const cloakTotal = summary["pbkdf2 (cloak)"].total.p50;
  const argonTotal = summary["argon2id (cryptsetup default)"].total.p50;
  // The cold stage with argon2id instead: the same stage with the KDF steps swapped.
  const coldWithArgon = coldStageP50Ms - cloakTotal + argonTotal;
  const a = result.argon2id;
  return {
    title: `Cold-stage key derivation: luksFormat + open, ms${indicative ? " (VM tier: indicative)" : ""}`,
    columns: ["KDF", "n", "format p50", "open p50", "format + open p50", "max"],
    rows,
    notes: [
      `argon2id / pbkdf2 (format + open, p50): ${kdfSpeedup(result).toFixed(1)}×; cryptsetup chose argon2id time ${a.time ?? "?"}, memory ${a.memoryKiB ?? "?"} KiB, ${a.cpus ?? "?"} threads here`,
      `a cold stage (p50 ${coldStageP50Ms.toFixed(0)} ms) with argon2id would take about ${coldWithArgon.toFixed(0)} ms: ${(coldWithArgon / coldStageP50Ms).toFixed(1)}× cloak's`,
      `cloak's format: LUKS2 ${LUKS_FORMAT.cipher}, ${LUKS_FORMAT.sectorSize}-byte sectors, ${LUKS_FORMAT.pbkdf} ${LUKS_FORMAT.pbkdfIterations} iterations; the argon2id run changes only --pbkdf`,
    ],
  };
}
