import { randomBytes } from "node:crypto";
import { readFile, stat, statfs, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CsiFixture, MiB, blockCapability, keyFor, mountCapability, run } from "./fixture.js";

// Volumes made by the Controller service and used through the Node service, on a real kernel:
// snapshots, restores and clones hold their source's data and open with its key; a restore
// onto a larger disk gets a filesystem of the larger size; integrity volumes work and refuse
// expansion; the smallest volume of each kind stages; a delete crypto-erases.

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

describe("the smallest volumes", () => {
  it.each([
    ["ext4", "ext4", {}, 8 * MiB],
    ["xfs", "xfs", { fsType: "xfs" }, 300 * MiB],
    ["ext4 with integrity", "ext4", { integrity: "true" }, 8 * MiB],
  ])("a 1-byte %s request makes a volume that stages and holds data", async (name, fsType, parameters, capacity) => {
    const { volume } = await fx.plugin.client.controller("CreateVolume", {
      name: `pvc-smallest-${name.replace(/\W+/g, "-")}`,
      capacity_range: { required_bytes: 1 },
      volume_capabilities: [mountCapability(fsType)],
      parameters,
    });
    expect(Number(volume!.capacity_bytes)).toBe(capacity);
    const id = volume!.volume_id;
    await fx.stage(id, mountCapability(fsType), volume!.volume_context);
    const size = Number((await run({ file: "blockdev", args: ["--getsize64", `/dev/mapper/cloak-${id}`] })).stdout);
    expect(size).toBeGreaterThanOrEqual(capacity);
    const target = await fx.publish(id, mountCapability(fsType));
    const data = randomBytes(MiB);
    await writeFile(join(target, "data"), data);
    expect((await readFile(join(target, "data"))).equals(data)).toBe(true);
    await fx.unpublish(id);
    await fx.unstage(id);
  });

  it("a 1-byte block request makes a one-sector device", async () => {
    const { volume } = await fx.plugin.client.controller("CreateVolume", {
      name: "pvc-smallest-block",
      capacity_range: { required_bytes: 1 },
      volume_capabilities: [blockCapability],
    });
    expect(volume!.capacity_bytes).toBe("4096");
    await fx.stage(volume!.volume_id, blockCapability);
    expect((await run({ file: "blockdev", args: ["--getsize64", `/dev/mapper/cloak-${volume!.volume_id}`] })).stdout.trim()).toBe("4096");
    await fx.unstage(volume!.volume_id);
  });
});

describe("deleting a staged volume", () => {
  it("is refused until it is unstaged, then crypto-erases it: header and keyslots overwritten, and no key opens what is left", async () => {
    const id = await createVolume("pvc-delete", 32 * MiB);
    await fx.stage(id);
    await writeFile(join(await fx.publish(id), "secret"), "erased with the volume");
    await fx.unpublish(id);
    await expect(fx.plugin.client.controller("DeleteVolume", { volume_id: id })).rejects.toMatchObject({ code: status.FAILED_PRECONDITION });
    await fx.unstage(id);

    // A copy of the disk taken before the delete, and its key. The key is derived from the
    // UUID, not stored, so it still exists after the delete: only the erase of the header
    // (where the volume key is, wrapped by that key) keeps it from the data.
    const before = await readFile(fx.volumeFile(id));
    const key = await keyFor(fx, (await fx.luksUuid(id))!);
    const copy = join(fx.root, "taken-before-delete.img");
    await writeFile(copy, before);
    await run({ file: "cryptsetup", args: ["open", "--test-passphrase", "--key-file", "-", copy], input: key });

    // Killed between the erase and the removal, so that what the erase left can be read.
    await fx.restart({ failpoints: [`delete:after-erase@${id}`] });
    await expect(fx.plugin.client.controller("DeleteVolume", { volume_id: id })).rejects.toMatchObject({ code: status.UNAVAILABLE });
    const after = await readFile(fx.volumeFile(id));
    const HEADER = 16 * MiB;
    let used = 0;
    let unchanged = 0;
    for (let offset = 0; offset < HEADER; offset += 4096) {
      const old = before.subarray(offset, offset + 4096);
      if (old.equals(Buffer.alloc(4096))) continue;
      used += 1;
      if (old.equals(after.subarray(offset, offset + 4096))) unchanged += 1;
    }
    // Every block of the header and keyslot area that held anything is overwritten; the
    // ciphertext after it is left as it was.
    expect(used).toBeGreaterThan(32);
    expect(unchanged).toBe(0);
    expect(after.subarray(HEADER).equals(before.subarray(HEADER))).toBe(true);

    // What is left opens with no key; nor does the ciphertext copied before the delete, put
    // under what the erase left.
    const leftover = join(fx.root, "after-erase.img");
    await writeFile(leftover, Buffer.concat([after.subarray(0, HEADER), before.subarray(HEADER)]));
    for (const file of [fx.volumeFile(id), leftover]) {
      expect((await run({ file: "cryptsetup", args: ["isLuks", file], okExitCodes: [1] })).exitCode).toBe(1);
      await expect(run({ file: "cryptsetup", args: ["open", "--test-passphrase", "--key-file", "-", file], input: key })).rejects.toMatchObject({
        exitCode: 1,
      });
    }

    await fx.restart();
    await fx.plugin.client.controller("DeleteVolume", { volume_id: id });
    await expect(stat(fx.volumeFile(id))).rejects.toMatchObject({ code: "ENOENT" });
    expect((await fx.plugin.client.controller("ListVolumes", {})).entries.map((e) => e.volume?.volume_id)).not.toContain(id);
  });
});
