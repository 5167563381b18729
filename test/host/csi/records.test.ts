import { readdir, readFile, stat, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HEALTH_ARGS, healthPort, httpGet, metricValue } from "../../support/csi-health.js";
import { waitFor } from "../../support/wait.js";
import { PluginHarness } from "../../support/plugin-harness.js";

// The controller's records across restarts: an unreadable record is set aside and everything
// else keeps working; what a killed plugin left half-done is finished or cleaned up at start;
// a creation the CO abandoned is removed after --abandon-creating-after.

const MiB = 1024 * 1024;
const capability = { mount: { fs_type: "ext4" }, access_mode: { mode: "SINGLE_NODE_WRITER" as const } };
const h = new PluginHarness("cloak-host-records-");
beforeAll(() => h.setUp());
afterAll(() => h.tearDown());

const recordsDir = (kind: "volumes" | "snapshots"): string => join(h.plugin.volumesDir, "records", kind);
const diskOf = (id: string): string => join(h.plugin.volumesDir, `${id}.img`);

async function create(name: string, size = 64 * MiB) {
  return (await h.controller("CreateVolume", { name, capacity_range: { required_bytes: size }, volume_capabilities: [capability] })).volume!;
}

async function recordIdNamed(name: string): Promise<string | undefined> {
  for (const file of await readdir(recordsDir("volumes"))) {
    if (!file.endsWith(".json")) continue;
    const record = JSON.parse(await readFile(join(recordsDir("volumes"), file), "utf8")) as { id: string; name: string };
    if (record.name === name) return record.id;
  }
  return undefined;
}

describe("an unreadable record", () => {
  it("is moved to quarantine, logged with its path and reason and counted, and every other volume is served, unstage included", async () => {
    const kept = await create("pvc-kept-volume");
    await writeFile(join(recordsDir("volumes"), "vol-torn.json"), '{"id": "vol-torn", "name": "pv');
    await h.restart({ args: HEALTH_ARGS });
    const metrics = (await httpGet(await healthPort(h.plugin), "/metrics")).body;
    expect(metricValue(metrics, "cloak_csi_records_quarantined_total", { store: "volumes" })).toBe(1);
    expect(metricValue(metrics, "cloak_csi_records_quarantined_total", { store: "snapshots" }) ?? 0).toBe(0);

    const listed = (await h.controller("ListVolumes", {})).entries.map((e) => e.volume?.volume_id);
    expect(listed).toContain(kept.volume_id);
    const quarantined = join(recordsDir("volumes"), "quarantine", "vol-torn.json");
    expect(await readFile(quarantined, "utf8")).toBe('{"id": "vol-torn", "name": "pv');
    expect(await readdir(recordsDir("volumes"))).not.toContain("vol-torn.json");
    const line = h.plugin.logs.find((l) => l["msg"] === "quarantined a record that cannot be read");
    expect(line).toMatchObject({ path: quarantined, reason: expect.stringMatching(/JSON/) });
    // The node service works too: an unstage of any volume goes through.
    await h.node("NodeUnstageVolume", { volume_id: kept.volume_id, staging_target_path: join(h.plugin.kubeletDir, "staging", kept.volume_id) });
    await h.controller("DeleteVolume", { volume_id: kept.volume_id });
  });

  it("leaves the disk of a quarantined record alone: it may be the only copy of someone's data", async () => {
    const volume = await create("pvc-orphaned");
    await writeFile(join(recordsDir("volumes"), `${volume.volume_id}.json`), "not json");
    await h.restart();
    expect((await stat(diskOf(volume.volume_id))).size).toBe(80 * MiB);
    expect(h.plugin.logs.some((l) => l["msg"] === "a disk has no record (its record may be in quarantine); left as it is" && l["id"] === volume.volume_id)).toBe(
      true,
    );
  });
});

describe("reconciliation at start", () => {
  it("finishes a delete that was cut off, without the CO's retry", async () => {
    const volume = await create("to-delete");
    await h.restart({ failpoints: ["delete:after-mark@" + volume.volume_id] });
    await expect(h.controller("DeleteVolume", { volume_id: volume.volume_id })).rejects.toMatchObject({ code: status.UNAVAILABLE });
    await h.restart();
    await expect(stat(diskOf(volume.volume_id))).rejects.toMatchObject({ code: "ENOENT" });
    expect(await readdir(recordsDir("volumes"))).not.toContain(`${volume.volume_id}.json`);
    expect(h.logged("finished an interrupted delete")).toBe(true);
  });

  it("keeps a creation that was cut off for the CO's retry, which completes it", async () => {
    await h.restart({ failpoints: ["create:after-record@pvc-kept"] });
    await expect(create("pvc-kept")).rejects.toMatchObject({ code: status.UNAVAILABLE });
    await h.restart();
    const id = await recordIdNamed("pvc-kept");
    expect(id).toBeDefined();
    const volume = await create("pvc-kept");
    expect(volume.volume_id).toBe(id);
  });

  it("removes a partial copy whose creation is gone", async () => {
    const partial = join(h.plugin.volumesDir, "vol-gone.img.partial");
    await writeFile(partial, "");
    await truncate(partial, 32 * MiB);
    await h.restart();
    await expect(stat(partial)).rejects.toMatchObject({ code: "ENOENT" });
  });

  it("removes a creation nobody asked about for --abandon-creating-after, and only then", async () => {
    await h.restart({ failpoints: ["create:after-record@pvc-abandoned"], args: ["--abandon-creating-after", "3"] });
    await expect(create("pvc-abandoned")).rejects.toMatchObject({ code: status.UNAVAILABLE });
    await h.restart();
    const id = await recordIdNamed("pvc-abandoned");
    expect(id).toBeDefined();
    // Kept while the CO may still retry.
    expect(await readdir(recordsDir("volumes"))).toContain(`${id}.json`);
    await waitFor("the abandoned creation's removal", async () => !(await readdir(recordsDir("volumes"))).includes(`${id}.json`), 20_000);
    expect(h.logged("removed a creation the CO abandoned")).toBe(true);
    // The name is free again: a late retry simply creates the volume anew.
    const volume = await create("pvc-abandoned");
    expect(volume.volume_id).not.toBe(id);
  });
});
