import { randomBytes, randomUUID } from "node:crypto";
import { open, rm, truncate } from "node:fs/promises";
import type { Runner } from "../../lib/exec.js";
import { createLocalNodeSource } from "../../csi/disk/local/node-source.js";
import { volumeImagePath } from "../../csi/disk/local/layout.js";
import * as cryptsetup from "../../csi/luks/cryptsetup.js";
import { median } from "../lib/stats.js";
import type { Table } from "../lib/table.js";
import { FIO_SHAPES, fioCommand, fioPrefill, parseFioJson, type FioFigures } from "./fio.js";

/**
 * fio on the same bytes three ways: the raw loop device (the region after the LUKS2 header),
 * the dm-crypt mapping on it as cloak opens it by default, and the mapping opened with the
 * workqueue bypass (`--perf-no_read_workqueue --perf-no_write_workqueue`). Rounds rotate the
 * order of the three, and each figure is the median over rounds.
 */
export const FIO_CONFIGS = ["raw loop", "dm-crypt", "dm-crypt, bypass"] as const;
export type FioConfig = (typeof FIO_CONFIGS)[number];

export interface FioOptions {
  readonly run: Runner;
  readonly dir: string;
  readonly dataBytes: number;
  readonly rounds: number;
  readonly runtimeSeconds: number;
  readonly rampSeconds: number;
  readonly progress: (line: string) => void;
}

export interface FioResult {
  /** runs[config][shape name]: one figure per round. */
  readonly runs: Record<FioConfig, Record<string, FioFigures[]>>;
  readonly dataOffsetBytes: number;
}

const MAPPING = "cloak-bench-fio";

export async function measureFio(options: FioOptions): Promise<FioResult> {
  const { run, dir, progress } = options;
  const disks = createLocalNodeSource({ dir, run });
  const file = volumeImagePath(dir, "fio");
  const passphrase = randomBytes(32);
  const runs = Object.fromEntries(FIO_CONFIGS.map((c) => [c, Object.fromEntries(FIO_SHAPES.map((s) => [s.name, [] as FioFigures[]]))])) as FioResult["runs"];
  let device: string | undefined;
  try {
    // Sized for the data area plus LUKS2's 16 MiB header; read back from the header below.
    await (await open(file, "w")).close();
    await truncate(file, options.dataBytes + 16 * 1024 * 1024);
    device = await disks.attach({
      volumeId: "fio",
      stagingPath: "",
      access: { kind: "block", mode: "SINGLE_NODE_WRITER" },
      volumeContext: {},
      publishContext: {},
      secrets: {},
      signal: new AbortController().signal,
    });
    await run(cryptsetup.luksFormat({ device, uuid: randomUUID(), passphrase, integrity: false }));
    const dump = JSON.parse((await run(cryptsetup.luksDumpJson(device))).stdout) as { segments: Record<string, { offset: string }> };
    const dataOffsetBytes = Number(Object.values(dump.segments)[0]?.offset);
    // Reads of never-written blocks would hit holes in the backing file: write everything once.
    await run(fioPrefill(device, dataOffsetBytes, options.dataBytes));
    progress(`  prefilled ${options.dataBytes / 1048576} MiB on ${device}, data at offset ${dataOffsetBytes}`);

    for (let round = 1; round <= options.rounds; round++) {
      const shift = (round - 1) % FIO_CONFIGS.length;
      const order = [...FIO_CONFIGS.slice(shift), ...FIO_CONFIGS.slice(0, shift)];
      for (const config of order) {
        const encrypted = config !== "raw loop";
        if (encrypted) await run(cryptsetup.luksOpen({ device, name: MAPPING, passphrase, bypassWorkqueues: config === "dm-crypt, bypass" }));
        try {
          for (const shape of FIO_SHAPES) {
            const target = encrypted ? { device: `/dev/mapper/${MAPPING}`, offsetBytes: 0 } : { device, offsetBytes: dataOffsetBytes };
            const figures = parseFioJson(
              await run(fioCommand({ shape, ...target, sizeBytes: options.dataBytes, runtimeSeconds: options.runtimeSeconds, rampSeconds: options.rampSeconds })),
            );
            runs[config][shape.name]?.push(figures);
            progress(`  round ${round} ${config.padEnd(16)} ${shape.name.padEnd(16)} ${figures.mibPerSecond.toFixed(1).padStart(8)} MiB/s ${figures.iops.toFixed(0).padStart(7)} IOPS`);
          }
        } finally {
          if (encrypted) await run(cryptsetup.luksClose(MAPPING));
        }
      }
    }
    return { runs, dataOffsetBytes };
  } finally {
    passphrase.fill(0);
    await run({ file: "cryptsetup", args: ["close", MAPPING], okExitCodes: [4] }).catch(() => undefined);
    if (device) await disks.detach({ volumeId: "fio", stagingPath: "", signal: new AbortController().signal });
    await rm(file, { force: true });
  }
}

export interface FioShapeSummary {
  readonly shape: string;
  readonly mibPerSecond: Record<FioConfig, number>;
  readonly iops: Record<FioConfig, number>;
  /** dm-crypt (cloak's default) / raw. */
  readonly encryptedOverRaw: number;
  readonly bypassOverRaw: number;
  /** The bypass's effect: bypass / default dm-crypt. */
  readonly bypassOverDefault: number;
}

export function summarizeFio(result: FioResult): FioShapeSummary[] {
  return FIO_SHAPES.map((shape) => {
    const pick = (f: (x: FioFigures) => number) =>
      Object.fromEntries(FIO_CONFIGS.map((c) => [c, median((result.runs[c][shape.name] ?? []).map(f))])) as Record<FioConfig, number>;
    const mib = pick((x) => x.mibPerSecond);
    return {
      shape: shape.name,
      mibPerSecond: mib,
      iops: pick((x) => x.iops),
      encryptedOverRaw: mib["dm-crypt"] / mib["raw loop"],
      bypassOverRaw: mib["dm-crypt, bypass"] / mib["raw loop"],
      bypassOverDefault: mib["dm-crypt, bypass"] / mib["dm-crypt"],
    };
  });
}

export function fioTable(summary: readonly FioShapeSummary[], options: { indicative: boolean; rounds: number; runtimeSeconds: number; dataBytes: number }): Table {
  const rows = summary.map((s) => [
    s.shape,
    s.mibPerSecond["raw loop"],
    s.iops["raw loop"],
    s.mibPerSecond["dm-crypt"],
    s.iops["dm-crypt"],
    s.encryptedOverRaw,
    s.mibPerSecond["dm-crypt, bypass"],
    s.iops["dm-crypt, bypass"],
    s.bypassOverDefault,
  ]);
  return {
    title: `fio through dm-crypt vs the raw loop device, MiB/s and IOPS (medians of ${options.rounds} rounds of ${options.runtimeSeconds} s)${options.indicative ? " (VM tier: indicative)" : ""}`,
    columns: ["shape", "raw MiB/s", "raw IOPS", "dm-crypt MiB/s", "dm-crypt IOPS", "dm-crypt / raw", "bypass MiB/s", "bypass IOPS", "bypass / dm-crypt"],
    rows,
    notes: [
      `libaio, O_DIRECT, iodepth 32, one job; ${options.dataBytes / 1048576} MiB on a loop device over a file in ${options.indicative ? "the guest's RAM (tmpfs)" : "the benchmark's directory"}; raw runs use the bytes after the LUKS2 header, the same bytes the mapping exposes`,
      "dm-crypt = cloak's default open (workqueues on); bypass = --perf-no_read_workqueue --perf-no_write_workqueue (cloak's --bypass-workqueues)",
    ],
  };
}
