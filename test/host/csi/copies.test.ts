import { createHash, randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, open, readdir, stat, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createRunner } from "../../../lib/exec.js";
import { createLogger } from "../../../lib/log.js";
import { FreezeLedger } from "../../../csi/disk/local/freeze-ledger.js";
import { deviceNumber } from "../../../csi/node/mounts.js";
import { writesWithin } from "../../support/frozen.js";
import { PluginHarness } from "../../support/plugin-harness.js";

// Clones, restores and snapshots are byte copies that may take longer than the CO's deadline:
// they run in the background, answer Aborted ("in progress") within each call's deadline,
// survive a kill of the plugin by resuming from their recorded progress, and hold their
// source so that it can be neither staged nor deleted under them.

const MiB = 1024 * 1024;
const run = createRunner({ logger: createLogger({ component: "test", level: "silent" }) });
const capability = { mount: { fs_type: "ext4" }, access_mode: { mode: "SINGLE_NODE_WRITER" as const } };
const h = new PluginHarness("cloak-host-copies-");
beforeAll(() => h.setUp());
afterAll(() => h.tearDown());

const diskOf = (id: string): string => join(h.plugin.volumesDir, `${id}.img`);

async function createVolume(name: string, bytes: number, source?: { volume?: { volume_id: string }; snapshot?: { snapshot_id: string } }, timeoutMs?: number) {
  const { volume } = await h.controller(
    "CreateVolume",
    { name, capacity_range: { required_bytes: bytes }, volume_capabilities: [capability], ...(source ? { volume_content_source: source } : {}) },
    timeoutMs === undefined ? {} : { timeoutMs },
  );
  return volume!;
}

/** Fills a disk with data that differs in every MiB, so that a copy put at the wrong offset shows. */
async function fill(file: string, seed: Buffer): Promise<void> {
  const size = (await stat(file)).size;
  const handle = await open(file, "r+");
  try {
    const block = Buffer.alloc(MiB);
    for (let offset = 0; offset < size; offset += MiB) {
      for (let i = 0; i < MiB; i += seed.length) seed.copy(block, i);
      block.writeUInt32LE(offset / MiB, 0);
      await handle.write(block, 0, Math.min(MiB, size - offset), offset);
    }
  } finally {
    await handle.close();
  }
}

async function sha256(file: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

describe("a clone of a large volume", () => {
  it("answers Aborted within each call's deadline while the copy runs, holds the source, and completes on a retry", async () => {
    const source = (await createVolume("pvc-large-source", 496 * MiB)).volume_id;
    await fill(diskOf(source), randomBytes(4096));
    // Aborted, not DeadlineExceeded: the answer came before the caller's deadline, which is
    // far shorter than copying 512 MiB takes.
    await expect(createVolume("pvc-large-clone", 496 * MiB, { volume: { volume_id: source } }, 500)).rejects.toMatchObject({
      code: status.ABORTED,
      details: expect.stringMatching(/is being copied: .*; retry later/),
    });
    // The copy reads the source: it can be neither deleted nor staged until the copy is done.
    await expect(h.controller("DeleteVolume", { volume_id: source })).rejects.toMatchObject({
      code: status.ABORTED,
      details: expect.stringMatching(/copy into vol-/),
    });
    await expect(
      h.node("NodeStageVolume", { volume_id: source, staging_target_path: join(h.plugin.kubeletDir, "staging", source), volume_capability: capability }),
    ).rejects.toMatchObject({ code: status.ABORTED });

    const clone = await createVolume("pvc-large-clone", 496 * MiB, { volume: { volume_id: source } });
    expect(await sha256(diskOf(clone.volume_id))).toBe(await sha256(diskOf(source)));
    expect((await readdir(h.plugin.volumesDir)).filter((f) => f.endsWith(".partial") || f.endsWith(".progress"))).toEqual([]);
    await h.controller("DeleteVolume", { volume_id: clone.volume_id });
    await h.controller("DeleteVolume", { volume_id: source });
  });

  it("resumes from its recorded progress after the plugin is killed mid-copy, and refuses the source's delete meanwhile", async () => {
    const source = (await createVolume("pvc-resumed-source", 160 * MiB)).volume_id;
    await fill(diskOf(source), randomBytes(4096));
    await h.restart({ failpoints: [`copy:mid-copy@${source}`] });
    await expect(createVolume("pvc-resumed-clone", 160 * MiB, { volume: { volume_id: source } })).rejects.toMatchObject({
      code: status.UNAVAILABLE,
    });
    await h.restart();
    // No copy runs now, but the record says one is under way: the source stays.
    await expect(h.controller("DeleteVolume", { volume_id: source })).rejects.toMatchObject({
      code: status.FAILED_PRECONDITION,
      details: expect.stringMatching(/is being copied into volume vol-.*; it can be deleted once the copy has finished/),
    });
    const clone = await createVolume("pvc-resumed-clone", 160 * MiB, { volume: { volume_id: source } });
    expect(h.plugin.logs.find((l) => l["msg"] === "resuming an interrupted copy")).toMatchObject({ copiedBytes: 64 * MiB });
    expect(await sha256(diskOf(clone.volume_id))).toBe(await sha256(diskOf(source)));
    await h.controller("DeleteVolume", { volume_id: clone.volume_id });
    await h.controller("DeleteVolume", { volume_id: source });
  });
});

describe("a restore interrupted by a kill", () => {
  it("copies again from the start when its source changed meanwhile", async () => {
    const source = (await createVolume("pvc-changing-source", 160 * MiB)).volume_id;
    await fill(diskOf(source), randomBytes(4096));
    await h.restart({ failpoints: [`copy:mid-copy@${source}`] });
    await expect(createVolume("pvc-of-changed", 160 * MiB, { volume: { volume_id: source } })).rejects.toMatchObject({ code: status.UNAVAILABLE });
    // Written while no plugin held it (as a stage after the restart could): the copy so far is stale.
    await fill(diskOf(source), randomBytes(4096));
    await h.restart();
    const clone = await createVolume("pvc-of-changed", 160 * MiB, { volume: { volume_id: source } });
    expect(h.logged("the source changed since the interrupted copy began; copying again from the start")).toBe(true);
    expect(await sha256(diskOf(clone.volume_id))).toBe(await sha256(diskOf(source)));
  });

  it("keeps its snapshot from being deleted until the restore is done", async () => {
    const source = (await createVolume("pvc-snapshotted", 160 * MiB)).volume_id;
    await fill(diskOf(source), randomBytes(4096));
    const { snapshot } = await h.controller("CreateSnapshot", { name: "snap-restored", source_volume_id: source });
    const snapshotId = snapshot!.snapshot_id;
    await h.restart({ failpoints: [`copy:mid-copy@${snapshotId}`] });
    await expect(createVolume("pvc-restored", 160 * MiB, { snapshot: { snapshot_id: snapshotId } })).rejects.toMatchObject({ code: status.UNAVAILABLE });
    await h.restart();
    await expect(h.controller("DeleteSnapshot", { snapshot_id: snapshotId })).rejects.toMatchObject({ code: status.FAILED_PRECONDITION });
    const restored = await createVolume("pvc-restored", 160 * MiB, { snapshot: { snapshot_id: snapshotId } });
    expect(await sha256(diskOf(restored.volume_id))).toBe(await sha256(diskOf(source)));
    await h.controller("DeleteSnapshot", { snapshot_id: snapshotId });
  });
});

/** A small ext4 mounted below the harness's directory (scrubTree unmounts it). */
async function mountedExt4(name: string): Promise<{ mnt: string; device: string }> {
  const image = join(h.root, `${name}.img`);
  await (await open(image, "w")).close();
  await truncate(image, 32 * MiB);
  await run({ file: "mkfs.ext4", args: ["-q", "-F", image] });
  const mnt = join(h.root, `${name}-mnt`);
  await mkdir(mnt);
  await run({ file: "mount", args: ["-o", "loop", image, mnt] });
  const loop = (await run({ file: "findmnt", args: ["-n", "-o", "SOURCE", mnt] })).stdout.trim();
  return { mnt, device: await deviceNumber(loop) };
}

/** What the plugin writes before it freezes a copy's source; then the freeze (and, in the story, the kill). */
async function frozenByACrashedCopy(ledgerDir: string, volumeId: string, fs: { mnt: string; device: string }): Promise<void> {
  await mkdir(ledgerDir, { recursive: true });
  await writeFile(join(ledgerDir, `${volumeId}.json`), JSON.stringify({ volumeId, mountPoint: fs.mnt, device: fs.device }));
  await run({ file: "fsfreeze", args: ["--freeze", fs.mnt] });
}

describe("a filesystem a killed copy left frozen", () => {
  it("is thawed before the next freeze, and nothing cloak did not freeze is", async () => {
    const left = await mountedExt4("left-frozen");
    const next = await mountedExt4("next-source");
    const foreign = await mountedExt4("frozen-by-someone-else");
    const ledgerDir = join(h.root, "ledger");
    await frozenByACrashedCopy(ledgerDir, "vol-left", left);
    await run({ file: "fsfreeze", args: ["--freeze", foreign.mnt] });
    try {
      const ledger = new FreezeLedger(ledgerDir, run, createLogger({ component: "test", level: "silent" }));
      let during: boolean[] = [];
      await ledger.whileFrozen({ volumeId: "vol-next", mountPoint: next.mnt, device: next.device }, async () => {
        during = [await writesWithin(join(left.mnt, "x"), 10_000), await writesWithin(join(next.mnt, "x"), 1_000)];
      });
      // The leftover was thawed first; the copy's own source was frozen while it ran, and is thawed after.
      expect(during).toEqual([true, false]);
      expect(await writesWithin(join(next.mnt, "y"), 10_000)).toBe(true);
      expect(await writesWithin(join(foreign.mnt, "x"), 1_000)).toBe(false);
      expect(await readdir(ledgerDir)).toEqual([]);
    } finally {
      await run({ file: "fsfreeze", args: ["--unfreeze", foreign.mnt], okExitCodes: [1] });
    }
  });

  it("is thawed when the plugin starts", async () => {
    const fs = await mountedExt4("frozen");
    const mnt = fs.mnt;
    await frozenByACrashedCopy(join(h.plugin.volumesDir, "frozen"), "vol-frozen", fs);
    await h.restart();
    expect(h.logged("thawed a filesystem an interrupted copy left frozen")).toBe(true);
    expect(await writesWithin(join(mnt, "after-thaw"), 10_000)).toBe(true);
    expect(await readdir(join(h.plugin.volumesDir, "frozen"))).toEqual([]);
  });
});
