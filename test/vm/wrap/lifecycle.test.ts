import { randomBytes } from "node:crypto";
import { open, readFile, statfs, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as blkid from "../../../csi/tools/blkid.js";
import { innerPaths } from "../../../csi/wrap/layout.js";
import { MiB, NOTHING, WrapFixture, blockCapability, mountCapability, run, type Hostile } from "./fixture.js";

// A volume's life through cloak in front of the block test driver in its attach-required
// profile (EBS-like: ControllerPublish returns the devicePath NodeStage needs), on a kernel
// with dm-crypt, driven in the order the sidecars and kubelet call; then the same driver
// turned hostile. (The bind profile runs under csi-sanity, test/sanity/wrap.sh.)

const fx = new WrapFixture("attach");
beforeAll(() => fx.setUp(), 900_000);
afterAll(() => fx.tearDown());

const marker = (): string => `CLOAK-WRAP-MARKER-${randomBytes(12).toString("hex")}`;
const mount = mountCapability();
const HEADER = 16 * MiB;

async function luksUuid(file: string): Promise<string | undefined> {
  const probe = blkid.parseProbe(await run(blkid.probe(file)));
  return probe.kind === "found" ? probe.fields["UUID"] : undefined;
}

async function fileHas(file: string, needle: string): Promise<boolean> {
  return (await readFile(file)).includes(Buffer.from(needle));
}

describe("a mounted volume through the wrapper", () => {
  const secret = marker();
  let id = "";
  let context: Record<string, string> = {};

  it("is created by the inner driver with its id, the header on top of the size", async () => {
    const volume = await fx.createVolume("pvc-wrap-mount", mount, 64 * MiB);
    id = volume.volume_id;
    expect(id).toMatch(/^blockdriver\/nodes\/wrap-node-1\/disks\/vol-/);
    expect(Number(volume.capacity_bytes)).toBe(64 * MiB);
    expect((await fileSize(fx.imageOf(id)))).toBe(64 * MiB + HEADER);
    expect(volume.accessible_topology).toEqual([{ segments: { "topology.blockdriver.test/node": "wrap-node-1" } }]);
    expect(volume.volume_context).toMatchObject({ "blockdriver.test/profile": "attach" });
  });

  it("is attached (publish_context passed through), staged, published, and takes a write", async () => {
    context = await fx.attach(id, mount);
    expect(context["devicePath"]).toMatch(/^\/dev\/loop\d+$/);
    await fx.stage(id, mount, context);
    const target = await fx.publish(id, mount);
    await writeFile(join(target, "marker.txt"), secret.repeat(64));
    await run({ file: "sync", args: [] });
    const paths = innerPaths(fx.innerRoot, id);
    // cloak opened the device the inner driver bound at its publish path.
    const stats = await fx.nodeCall("NodeGetVolumeStats", { volume_id: id, volume_path: target });
    expect(stats.volume_condition).toEqual({ abnormal: false, message: expect.stringMatching(/header matches policy/) });
    expect((await run({ file: "stat", args: ["-c", "%F", paths.device] })).stdout.trim()).toBe("block special file");
  });

  it("reports an abnormal condition when the inner driver's device goes away, and a restage brings it back", async () => {
    const target = fx.targetPath(id);
    await fx.inner.node("NodeUnpublishVolume", { volume_id: id, target_path: innerPaths(fx.innerRoot, id).device });
    const stats = await fx.nodeCall("NodeGetVolumeStats", { volume_id: id, volume_path: target });
    expect(stats.volume_condition?.abnormal).toBe(true);
    expect(stats.volume_condition?.message).toMatch(/not attached/);
    await fx.stage(id, mount, context);
    const again = await fx.nodeCall("NodeGetVolumeStats", { volume_id: id, volume_path: target });
    expect(again.volume_condition?.abnormal).toBe(false);
  });

  it("unstages in reverse, leaving nothing behind and no plaintext on the inner disk", async () => {
    await fx.unpublish(id);
    await fx.unstage(id);
    expect(await fx.leftovers(id)).toMatchObject(NOTHING);
    expect(await fileHas(fx.imageOf(id), secret)).toBe(false);
    expect(await luksUuid(fx.imageOf(id))).toMatch(/^[0-9a-f-]{36}$/);
    await fx.detachFromNode(id);
    expect((await fx.leftovers(id)).loops).toEqual([]);
  });

  it("restages and reads the marker back", async () => {
    context = await fx.attach(id, mount);
    await fx.stage(id, mount, context);
    const target = await fx.publish(id, mount);
    expect(await readFile(join(target, "marker.txt"), "utf8")).toBe(secret.repeat(64));
  });

  it("expands: the inner disk, the mapping and the filesystem", async () => {
    const target = fx.targetPath(id);
    const before = await statfs(target);
    const expanded = await fx.ctl("ControllerExpandVolume", { volume_id: id, capacity_range: { required_bytes: String(128 * MiB) } });
    expect(expanded).toEqual({ capacity_bytes: String(128 * MiB), node_expansion_required: true });
    expect(await fileSize(fx.imageOf(id))).toBe(128 * MiB + HEADER);
    const node = await fx.nodeCall("NodeExpandVolume", {
      volume_id: id,
      volume_path: target,
      staging_target_path: fx.stagingPath(id),
      capacity_range: { required_bytes: String(128 * MiB) },
      volume_capability: mount,
    });
    expect(Number(node.capacity_bytes)).toBe(128 * MiB);
    const after = await statfs(target);
    expect(after.blocks * after.bsize).toBeGreaterThan(before.blocks * before.bsize + 50 * MiB);
    expect(await readFile(join(target, "marker.txt"), "utf8")).toBe(secret.repeat(64));
  });

  it("snapshots and clones carry the header (same LUKS UUID, so the same key) and open with the data", async () => {
    await fx.unpublish(id);
    await fx.unstage(id);
    await fx.detachFromNode(id);
    const snapshot = (await fx.ctl("CreateSnapshot", { name: "snap-wrap", source_volume_id: id })).snapshot;
    expect(snapshot?.size_bytes).toBe(String(128 * MiB));
    const restored = await fx.createVolume("pvc-wrap-restored", mount, 128 * MiB, { snapshot: { snapshot_id: snapshot?.snapshot_id } });
    const clone = await fx.createVolume("pvc-wrap-clone", mount, 128 * MiB, { volume: { volume_id: id } });
    for (const copy of [restored, clone]) {
      expect(copy.content_source).not.toBeNull();
      expect(await luksUuid(fx.imageOf(copy.volume_id))).toBe(await luksUuid(fx.imageOf(id)));
      const ctx = await fx.attach(copy.volume_id, mount);
      await fx.stage(copy.volume_id, mount, ctx);
      const target = await fx.publish(copy.volume_id, mount, "pod-copy");
      expect(await readFile(join(target, "marker.txt"), "utf8")).toBe(secret.repeat(64));
      await fx.unpublish(copy.volume_id, "pod-copy");
      await fx.unstage(copy.volume_id);
      await fx.detachFromNode(copy.volume_id);
      expect(await fx.leftovers(copy.volume_id)).toMatchObject({ ...NOTHING, loops: [] });
    }
  });
});

describe("a block volume through the wrapper", () => {
  it("publishes the decrypted device, and the inner disk holds only ciphertext", async () => {
    const secret = marker();
    const volume = await fx.createVolume("pvc-wrap-block", blockCapability, 32 * MiB);
    const id = volume.volume_id;
    const context = await fx.attach(id, blockCapability);
    await fx.stage(id, blockCapability, context);
    const target = await fx.publish(id, blockCapability);
    const handle = await open(target, "r+");
    await handle.write(Buffer.from(secret), 0, secret.length, 4 * MiB);
    await handle.sync();
    await handle.close();
    await fx.unpublish(id);
    await fx.unstage(id);
    expect(await fileHas(fx.imageOf(id), secret)).toBe(false);
    await fx.stage(id, blockCapability, context);
    const again = await fx.publish(id, blockCapability);
    const read = Buffer.alloc(secret.length);
    const h2 = await open(again, "r");
    await h2.read(read, 0, secret.length, 4 * MiB);
    await h2.close();
    expect(read.toString()).toBe(secret);
    await fx.unpublish(id);
    await fx.unstage(id);
    await fx.detachFromNode(id);
    expect(await fx.leftovers(id)).toMatchObject({ ...NOTHING, loops: [] });
  });
});

describe("a wrapped disk that already holds a filesystem", () => {
  it("is refused untouched, and the inner driver's publication is undone", async () => {
    const volume = await fx.createVolume("pvc-wrap-used", mount, 32 * MiB);
    const id = volume.volume_id;
    await run({ file: "mkfs.ext4", args: ["-q", "-F", fx.imageOf(id)] });
    const before = await fx.sha256(fx.imageOf(id));
    const context = await fx.attach(id, mount);
    await expect(fx.stage(id, mount, context)).rejects.toMatchObject({
      code: status.FAILED_PRECONDITION,
      details: expect.stringMatching(/holds ext4 filesystem.*refusing to format it/),
    });
    expect(await fx.sha256(fx.imageOf(id))).toBe(before);
    expect(await fx.leftovers(id)).toMatchObject(NOTHING);
    await fx.detachFromNode(id);
  });
});

describe("identity and topology", () => {
  it("answers NodeGetInfo with the inner driver's node id, limit and topology", async () => {
    expect(await fx.nodeCall("NodeGetInfo", {})).toEqual({
      node_id: "wrap-node-1",
      max_volumes_per_node: "8",
      accessible_topology: { segments: { "topology.blockdriver.test/node": "wrap-node-1" } },
    });
  });

  it("names itself, and advertises the inner driver's plugin capabilities", async () => {
    expect((await fx.node.client.identity("GetPluginInfo", {})).name).toBe("wrapped.cloak.dev");
    const caps = await fx.controller.client.identity("GetPluginCapabilities", {});
    expect(caps.capabilities).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ service: { type: "CONTROLLER_SERVICE" } }),
        expect.objectContaining({ service: { type: "VOLUME_ACCESSIBILITY_CONSTRAINTS" } }),
        expect.objectContaining({ volume_expansion: { type: "ONLINE" } }),
      ]),
    );
  });
});

async function fileSize(file: string): Promise<number> {
  return Number((await run({ file: "stat", args: ["-c", "%s", file] })).stdout.trim());
}

// A wrapped driver that misbehaves at NodePublish (the block test driver's --hostile modes,
// restarted under the same socket): cloak answers with a clear status, formats nothing, and
// leaves nothing behind — no mount, no mapping, no directory, no inner publication.
const REFUSALS: [Hostile, RegExp][] = [
  ["non-block", /placed a regular file at .*, not a block device: cloak wraps only drivers that serve block volumes/],
  ["symlink", /placed a symbolic link at .* \(to \/dev\/loop\d+\), not a block device/],
  ["data", /holds ext4 filesystem .*refusing to format it/],
];

describe.each(REFUSALS)("an inner driver that publishes %s", (hostile, message) => {
  it("gets FailedPrecondition, and its publication is undone", async () => {
    await fx.restartDriver(hostile);
    const id = (await fx.createVolume(`pvc-hostile-${hostile}`, mount, 32 * MiB)).volume_id;
    const before = await fx.sha256(fx.imageOf(id));
    const context = await fx.attach(id, mount);
    await expect(fx.stage(id, mount, context)).rejects.toMatchObject({ code: status.FAILED_PRECONDITION, details: expect.stringMatching(message) });
    expect(await fx.sha256(fx.imageOf(id))).toBe(before);
    expect(await fx.leftovers(id)).toMatchObject(NOTHING);
    await fx.detachFromNode(id);
  });
});

describe("an inner driver that hangs in NodePublishVolume", () => {
  it("is DeadlineExceeded before kubelet's deadline, naming the call; kubelet's unstage then cleans up", async () => {
    await fx.restartDriver("hang");
    const id = (await fx.createVolume("pvc-hostile-hang", mount, 32 * MiB)).volume_id;
    const context = await fx.attach(id, mount);
    const started = Date.now();
    await expect(fx.stage(id, mount, context, {}, 15_000)).rejects.toMatchObject({
      code: status.DEADLINE_EXCEEDED,
      details: expect.stringMatching(/NodePublishVolume did not answer within/),
    });
    expect(Date.now() - started).toBeLessThan(15_000);
    // DeadlineExceeded is not final: kubelet keeps the stage "uncertain" and unstages it.
    await fx.unstage(id);
    expect(await fx.leftovers(id)).toMatchObject(NOTHING);
    await fx.detachFromNode(id);
  });

  it("once it behaves again, is reached over the same channel and stages", async () => {
    await fx.restartDriver(undefined);
    const id = (await fx.createVolume("pvc-hostile-none", mount, 32 * MiB)).volume_id;
    const context = await fx.attach(id, mount);
    await fx.stage(id, mount, context);
    await fx.unstage(id);
    await fx.detachFromNode(id);
    expect(await fx.leftovers(id)).toMatchObject({ ...NOTHING, loops: [] });
  });
});
