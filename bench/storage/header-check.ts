import { randomBytes, randomUUID } from "node:crypto";
import { isDeepStrictEqual } from "node:util";
import { mkdtemp, open, rm, truncate } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Runner } from "../../lib/exec.js";
import * as cryptsetup from "../../csi/luks/cryptsetup.js";
import { headerVerdict } from "../../csi/luks/header.js";
import { readHeaderArea } from "../../csi/luks/header-read.js";
import { checkHeader, type HeaderVerdict } from "../../csi/luks/policy.js";
import * as losetup from "../../csi/tools/losetup.js";
import { median } from "../lib/stats.js";
import type { Table } from "../lib/table.js";

/** A loop device over a sparse file in a temporary directory, formatted with cloak's LUKS2 layout. */
export interface CloakDevice {
  readonly file: string;
  readonly device: string;
  readonly passphrase: Buffer;
}

export async function withCloakDevice<T>(run: Runner, body: (disk: CloakDevice) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), "cloak-bench-header-"));
  const file = join(dir, "disk.img");
  const passphrase = randomBytes(32);
  let device: string | undefined;
  try {
    await (await open(file, "w")).close();
    await truncate(file, 64 * 1024 * 1024);
    device = (await run(losetup.attach(file, false))).stdout.trim();
    await run(cryptsetup.luksFormat({ device, uuid: randomUUID(), passphrase, integrity: false }));
    return await body({ file, device, passphrase });
  } finally {
    passphrase.fill(0);
    if (device) await run(losetup.detach(device)).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * The header check the plugin makes before every open, two ways on the same device, alternating:
 * `cryptsetup luksDump --dump-json-metadata` then checkHeader on its JSON (what a warm stage ran
 * before), and the in-process reading of both header copies (csi/luks/header.ts, what it runs
 * now). Every sample's verdicts must agree, or the comparison means nothing.
 */
export interface HeaderCheckTimes {
  readonly luksDumpMs: readonly number[];
  readonly inProcessMs: readonly number[];
}

export async function measureHeaderCheck(run: Runner, device: string, repeats: number): Promise<HeaderCheckTimes> {
  const luksDumpMs: number[] = [];
  const inProcessMs: number[] = [];
  const viaLuksDump = async (): Promise<HeaderVerdict> => checkHeader(JSON.parse((await run(cryptsetup.luksDumpJson(device))).stdout));
  const inProcess = async (): Promise<HeaderVerdict> => headerVerdict(await readHeaderArea(device));
  for (let i = 0; i < repeats; i++) {
    const order = i % 2 === 0 ? ([[viaLuksDump, luksDumpMs], [inProcess, inProcessMs]] as const) : ([[inProcess, inProcessMs], [viaLuksDump, luksDumpMs]] as const);
    const verdicts: HeaderVerdict[] = [];
    for (const [check, times] of order) {
      const started = performance.now();
      verdicts.push(await check());
      times.push(performance.now() - started);
    }
    if (!isDeepStrictEqual(verdicts[0], verdicts[1])) throw new Error(`the two header checks disagree on ${device}: ${JSON.stringify(verdicts)}`);
  }
  return { luksDumpMs, inProcessMs };
}

/** One row per place measured: [where, times]. */
export function headerCheckTable(places: readonly (readonly [string, HeaderCheckTimes])[], indicative: boolean): Table {
  return {
    title: `The header check before every open: cryptsetup luksDump vs in process, median ms${indicative ? " (VM tier: indicative)" : ""}`,
    columns: ["where", "n", "luksDump + checkHeader", "in process (header.ts)", "luksDump / in process"],
    rows: places.map(([where, t]) => [where, t.luksDumpMs.length, median(t.luksDumpMs), median(t.inProcessMs), median(t.luksDumpMs) / median(t.inProcessMs)]),
    notes: [
      "in process: one open with O_DIRECT and one 32 KiB read of both header copies, their sha256 checksums, the JSON parsed, the copies compared; the same verdict as luksDump's in every sample",
    ],
  };
}
