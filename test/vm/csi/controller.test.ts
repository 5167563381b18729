import { readFile, statfs, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CsiFixture, MiB, mountCapability, run } from "./fixture.js";

// Volumes made by the Controller service and used through the Node service, on a real kernel:
// snapshots, restores and clones hold their source's data and open with its key; a restore
// onto a larger disk gets a filesystem of the larger size; integrity volumes work and refuse
// expansion.

const fx = new CsiFixture();
beforeAll(() => fx.setUp());
afterAll(() => fx.tearDown());

async function createVolume(name: string, bytes: number, extra: object = {}): Promise<string> {
  const { volume } = await fx.plugin.client.controller("CreateVolume", {
    name,
    capacity_range: { required_bytes: bytes },
    volume_capabilities: [mountCapability()],
    ...extra,
  });
  return volume!.volume_id;
}

describe("snapshots, restores and clones", () => {
  let source = "";
  let snapshotId = "";

  it("snapshots a volume while it is mounted and in use", async () => {
    source = await createVolume("pvc-src", 64 * MiB);
    await fx.stage(source);
    const target = await fx.publish(source);
    await writeFile(join(target, "before"), "taken before the snapshot");
    const { snapshot } = await fx.plugin.client.controller("CreateSnapshot", { name: "snap-src", source_volume_id: source });
    snapshotId = snapshot!.snapshot_id;
    await writeFile(join(target, "after"), "written after the snapshot");
    await fx.unpublish(source);
    await fx.unstage(source);
  });

  it("restores the snapshot: the data as it was, opened with the source's key", async () => {
    const restored = await createVolume("pvc-restored", 64 * MiB, { volume_content_source: { snapshot: { snapshot_id: snapshotId } } });
    expect(await fx.luksUuid(restored)).toBe(await fx.luksUuid(source));
    await fx.stage(restored);
    const target = await fx.publish(restored);
    expect(await readFile(join(target, "before"), "utf8")).toBe("taken before the snapshot");
    await expect(readFile(join(target, "after"))).rejects.toMatchObject({ code: "ENOENT" });
    await fx.unpublish(restored);
    await fx.unstage(restored);
  });

  it("clones onto a larger disk, grows the filesystem, and outlives its deleted source", async () => {
    const clone = await createVolume("pvc-clone", 160 * MiB, { volume_content_source: { volume: { volume_id: source } } });
    await fx.plugin.client.controller("DeleteVolume", { volume_id: source });
    await fx.stage(clone);
    const target = await fx.publish(clone);
    expect(await readFile(join(target, "after"), "utf8")).toBe("written after the snapshot");
    const fs = await statfs(target);
    expect(fs.blocks * fs.bsize).toBeGreaterThan(140 * MiB);
    await fx.unpublish(clone);
    await fx.unstage(clone);
    // The label is back to in-use: a second stage does not grow again.
    const label = await run({ file: "blkid", args: ["-p", "-s", "LABEL", "-o", "value", fx.volumeFile(clone)] });
    expect(label.stdout.trim()).toBe("in-use");
  });
});

describe("the key id the controller chooses", () => {
  it("is the UUID the node formats with, handed over in the volume context; copies inherit it", async () => {
    const { volume } = await fx.plugin.client.controller("CreateVolume", { name: "pvc-keyed", capacity_range: { required_bytes: 32 * MiB }, volume_capabilities: [mountCapability()] });
    const id = volume!.volume_id;
    const keyId = volume!.volume_context["cloak.dev/key-id"] ?? "";
    expect(keyId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    // As kubelet stages it: with the PV's volumeAttributes, which are the volume context.
    await fx.stage(id, mountCapability(), volume!.volume_context);
    expect(await fx.luksUuid(id)).toBe(keyId);
    await fx.unstage(id);
    const { volume: clone } = await fx.plugin.client.controller("CreateVolume", {
      name: "pvc-keyed-clone",
      capacity_range: { required_bytes: 32 * MiB },
      volume_capabilities: [mountCapability()],
      volume_content_source: { volume: { volume_id: id } },
    });
    expect(clone!.volume_context["cloak.dev/key-id"]).toBe(keyId);
    await fx.stage(clone!.volume_id, mountCapability(), clone!.volume_context);
    await fx.unstage(clone!.volume_id);

    // A context naming another key than the disk's header carries: refused, nothing opened.
    await expect(fx.stage(id, mountCapability(), { ...volume!.volume_context, "cloak.dev/key-id": "00000000-0000-4000-8000-000000000000" })).rejects.toMatchObject({
      code: status.FAILED_PRECONDITION,
      details: expect.stringMatching(new RegExp(`the disk's LUKS UUID ${keyId} is not the key id 00000000-0000-4000-8000-000000000000 the volume was created with`)),
    });
    await fx.unstage(id);
  });
});

describe("an integrity volume", () => {
  it("is formatted with dm-integrity, holds data, and refuses expansion with a clear message", async () => {
    const id = await createVolume("pvc-integrity", 32 * MiB, { parameters: { integrity: "true" } });
    await fx.stage(id, mountCapability(), { integrity: "true", fsType: "ext4" });
    const target = await fx.publish(id);
    await writeFile(join(target, "data"), "authenticated");
    const dump = JSON.parse((await run({ file: "cryptsetup", args: ["luksDump", "--dump-json-metadata", fx.volumeFile(id)] })).stdout) as {
      segments: Record<string, { integrity?: { type: string } }>;
    };
    expect(dump.segments["0"]?.integrity?.type).toBe("hmac(sha256)");
    const fs = await statfs(target);
    expect(fs.blocks * fs.bsize).toBeGreaterThan(28 * MiB);

    await expect(
      fx.plugin.client.controller("ControllerExpandVolume", { volume_id: id, capacity_range: { required_bytes: 64 * MiB } }),
    ).rejects.toMatchObject({ code: status.FAILED_PRECONDITION, details: expect.stringMatching(/dm-integrity, which cannot be expanded/) });
    await expect(fx.node("NodeExpandVolume", { volume_id: id, volume_path: target })).rejects.toMatchObject({
      code: status.FAILED_PRECONDITION,
      details: expect.stringMatching(/cannot be grown in place/),
    });
    await fx.unpublish(id);
    await fx.unstage(id);
  });

  it("refuses to open, as an integrity volume, a disk whose header has no integrity segment", async () => {
    // A header without integrity where the StorageClass promised it (swapped by someone, or a
    // copy of another volume): opening it would silently drop the protection.
    const id = await createVolume("pvc-plain-as-integrity", 32 * MiB);
    await fx.stage(id);
    await fx.unstage(id);
    await expect(fx.stage(id, mountCapability(), { integrity: "true" })).rejects.toMatchObject({
      code: status.FAILED_PRECONDITION,
      details: expect.stringMatching(/was created with integrity protection but its header says otherwise/),
    });
    await fx.unstage(id);
  });
});

describe("deleting a staged volume", () => {
  it("is refused until it is unstaged, then crypto-erases it", async () => {
    const id = await createVolume("pvc-delete", 32 * MiB);
    await fx.stage(id);
    await expect(fx.plugin.client.controller("DeleteVolume", { volume_id: id })).rejects.toMatchObject({ code: status.FAILED_PRECONDITION });
    await fx.unstage(id);
    await fx.plugin.client.controller("DeleteVolume", { volume_id: id });
    expect((await fx.plugin.client.controller("ListVolumes", {})).entries.map((e) => e.volume?.volume_id)).not.toContain(id);
  });
});
