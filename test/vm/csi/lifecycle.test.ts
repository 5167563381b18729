import { randomBytes } from "node:crypto";
import { mkdtemp, open, readFile, readdir, stat, statfs, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { topMountAt } from "../../../csi/node/mounts.js";
import { CsiFixture, MiB, blockCapability, fileContains, mapperExists, mountCapability, attachedLoops, run } from "./fixture.js";

// The encrypted volume's life on a real kernel with dm-crypt, driven through the plugin's
// gRPC API in the order kubelet calls it.

const fx = new CsiFixture();
beforeAll(() => fx.setUp());
afterAll(() => fx.tearDown());

function marker(): string {
  return `CLOAK-MARKER-${randomBytes(12).toString("hex")}`;
}

describe("a mounted volume", () => {
  const id = "vol-mount";
  const secret = marker();

  it("stages, publishes, takes a write, and is torn down again", async () => {
    await fx.newVolume(id);
    await fx.stage(id);
    const target = await fx.publish(id);
    await writeFile(join(target, "marker.txt"), secret.repeat(64));
    await run({ file: "sync", args: [] });

    const stats = await fx.node("NodeGetVolumeStats", { volume_id: id, volume_path: target });
    const bytes = stats.usage.find((u) => u.unit === "BYTES");
    expect(Number(bytes?.total)).toBeGreaterThan(40 * MiB);
    expect(Number(bytes?.used)).toBeGreaterThan(0);
    expect(stats.usage.find((u) => u.unit === "INODES")?.total).not.toBe("0");
    expect(stats.volume_condition).toEqual({ abnormal: false, message: expect.stringMatching(/header matches policy/) });

    await fx.unpublish(id);
    await expect(stat(target)).rejects.toMatchObject({ code: "ENOENT" });
    await fx.unstage(id);
    expect(mapperExists(id)).toBe(false);
    expect(await attachedLoops(fx.volumeFile(id))).toEqual([]);
  });

  it("left no trace of the plaintext on the disk", async () => {
    expect(await fileContains(fx.volumeFile(id), secret)).toBe(false);
  });

  it("control: the same write to a plain ext4 on the same kind of disk is readable in the file", async () => {
    const dir = await mkdtemp(join(fx.root, "plain-"));
    const file = join(dir, "plain.img");
    await (await open(file, "w")).close();
    await truncate(file, 64 * MiB);
    const loop = (await run({ file: "losetup", args: ["--find", "--show", file] })).stdout.trim();
    const mnt = join(dir, "mnt");
    try {
      await run({ file: "mkfs.ext4", args: ["-q", loop] });
      await run({ file: "mkdir", args: ["-p", mnt] });
      await run({ file: "mount", args: [loop, mnt] });
      await writeFile(join(mnt, "marker.txt"), secret.repeat(64));
      await run({ file: "umount", args: [mnt] });
    } finally {
      await run({ file: "losetup", args: ["--detach", loop] });
    }
    expect(await fileContains(file, secret)).toBe(true);
  });

  it("comes back with its data when staged again", async () => {
    const uuid = await fx.luksUuid(id);
    await fx.stage(id);
    const target = await fx.publish(id);
    expect(await readFile(join(target, "marker.txt"), "utf8")).toBe(secret.repeat(64));
    expect(await fx.luksUuid(id)).toBe(uuid);
  });

  it("treats every repeated call as success (kubelet retries)", async () => {
    await fx.stage(id);
    await fx.publish(id);
    await fx.unpublish(id);
    await fx.unpublish(id);
    await fx.unstage(id);
    await fx.unstage(id);
    expect(mapperExists(id)).toBe(false);
  });
});

describe("publishing", () => {
  const id = "vol-publish";
  beforeAll(async () => {
    await fx.newVolume(id);
    await fx.stage(id, mountCapability("ext4", ["noatime"]));
  });
  afterAll(async () => {
    await fx.unpublish(id, "pod-ro");
    await fx.unpublish(id, "pod-rw");
    await fx.unstage(id);
  });

  it("honours mount flags at stage", async () => {
    expect((await topMountAt(fx.stagingPath(id)))?.options).toContain("noatime");
  });

  it("publishes read-only when asked, and the kernel enforces it", async () => {
    const target = await fx.publish(id, mountCapability(), { readonly: true, pod: "pod-ro" });
    await expect(writeFile(join(target, "x"), "no")).rejects.toMatchObject({ code: "EROFS" });
  });

  it("publishes to a second pod read-write, and refuses to republish the same path differently", async () => {
    const target = await fx.publish(id, mountCapability(), { pod: "pod-rw" });
    await writeFile(join(target, "y"), "yes");
    await expect(fx.publish(id, mountCapability(), { readonly: true, pod: "pod-rw" })).rejects.toMatchObject({
      code: status.ALREADY_EXISTS,
    });
  });

  it("refuses to publish a volume that is not staged", async () => {
    await fx.newVolume("vol-unstaged");
    await expect(fx.publish("vol-unstaged")).rejects.toMatchObject({ code: status.FAILED_PRECONDITION, details: expect.stringMatching(/not staged/) });
  });
});

describe("xfs", () => {
  it("makes, mounts and reopens an xfs volume", async () => {
    const id = "vol-xfs";
    await fx.newVolume(id, 320 * MiB);
    await fx.stage(id, mountCapability("xfs"));
    let target = await fx.publish(id, mountCapability("xfs"));
    await writeFile(join(target, "f"), "xfs data");
    expect((await topMountAt(fx.stagingPath(id)))?.fsType).toBe("xfs");
    await fx.unpublish(id);
    await fx.unstage(id);
    // The filesystem is never recreated, and a request for another one is refused.
    await expect(fx.stage(id, mountCapability("ext4"))).rejects.toMatchObject({
      code: status.FAILED_PRECONDITION,
      details: expect.stringMatching(/holds an xfs filesystem but ext4 was requested/),
    });
    await fx.unstage(id);
    await fx.stage(id, mountCapability("xfs"));
    target = await fx.publish(id, mountCapability("xfs"));
    expect(await readFile(join(target, "f"), "utf8")).toBe("xfs data");
    await fx.unpublish(id);
    await fx.unstage(id);
  });
});

describe("a block volume", () => {
  const id = "vol-block";
  const secret = marker();

  it("publishes the decrypted device node, which takes writes", async () => {
    await fx.newVolume(id);
    await fx.stage(id, blockCapability);
    const target = await fx.publish(id, blockCapability);
    expect((await stat(target)).isBlockDevice()).toBe(true);
    const handle = await open(target, "r+");
    await handle.write(Buffer.from(secret.repeat(128)), 0, secret.length * 128, 8192);
    await handle.sync();
    await handle.close();

    const stats = await fx.node("NodeGetVolumeStats", { volume_id: id, volume_path: target });
    expect(Number(stats.usage[0]?.total)).toBe(64 * MiB - 16 * MiB);
    expect(stats.volume_condition?.abnormal).toBe(false);
    await fx.unpublish(id);
    await fx.unstage(id);
    expect(await fileContains(fx.volumeFile(id), secret)).toBe(false);
  });

  it("reads the data back after staging again, and is never given a filesystem", async () => {
    await fx.stage(id, blockCapability);
    const target = await fx.publish(id, blockCapability);
    const handle = await open(target, "r");
    const buffer = Buffer.alloc(secret.length);
    await handle.read(buffer, 0, buffer.length, 8192);
    await handle.close();
    expect(buffer.toString()).toBe(secret);
    await fx.unpublish(id);
    await fx.unstage(id);

    // Staged as a filesystem by mistake: the raw data shows no filesystem, but the volume is
    // marked in use, so it is refused instead of formatted.
    await expect(fx.stage(id, mountCapability())).rejects.toMatchObject({
      code: status.FAILED_PRECONDITION,
      details: expect.stringMatching(/has been used before .* refusing to format it/),
    });
    await fx.unstage(id);
  });
});

describe("expansion", () => {
  it("grows the loop device, the mapping and the filesystem, keeping the data", async () => {
    const id = "vol-grow";
    const file = await fx.newVolume(id, 64 * MiB);
    await fx.stage(id);
    const target = await fx.publish(id);
    await writeFile(join(target, "keep"), "still here");
    const before = await statfs(target);

    // What ControllerExpandVolume does for the local source: the file grows.
    await truncate(file, 128 * MiB);
    const response = await fx.node("NodeExpandVolume", {
      volume_id: id,
      volume_path: target,
      capacity_range: { required_bytes: 112 * MiB },
    });
    expect(Number(response.capacity_bytes)).toBe(128 * MiB - 16 * MiB);
    const after = await statfs(target);
    expect(after.blocks * after.bsize).toBeGreaterThan(before.blocks * before.bsize + 50 * MiB);
    expect(await readFile(join(target, "keep"), "utf8")).toBe("still here");

    // A second call is a no-op that reports the same size.
    const again = await fx.node("NodeExpandVolume", { volume_id: id, volume_path: target });
    expect(again.capacity_bytes).toBe(response.capacity_bytes);
    await fx.unpublish(id);
    await fx.unstage(id);
  });

  it("refuses when the disk did not grow enough", async () => {
    const id = "vol-grow-short";
    await fx.newVolume(id, 64 * MiB);
    await fx.stage(id);
    const target = await fx.publish(id);
    await expect(
      fx.node("NodeExpandVolume", { volume_id: id, volume_path: target, capacity_range: { required_bytes: 512 * MiB } }),
    ).rejects.toMatchObject({ code: status.OUT_OF_RANGE });
    await fx.unpublish(id);
    await fx.unstage(id);
  });
});

describe("cleanliness", () => {
  it("leaves no mapping, mount or loop device of its own behind", async () => {
    const mappings = (await readdir("/dev/mapper")).filter((n) => n.startsWith("cloak-"));
    expect(mappings).toEqual([]);
    for (const file of await readdir(fx.plugin.volumesDir)) {
      expect(await attachedLoops(join(fx.plugin.volumesDir, file))).toEqual([]);
    }
  });
});
