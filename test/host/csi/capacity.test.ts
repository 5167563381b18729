import { mkdir, open, stat, truncate } from "node:fs/promises";
import { join } from "node:path";
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createRunner } from "../../../lib/exec.js";
import { createLogger } from "../../../lib/log.js";
import { PluginHarness } from "../../support/plugin-harness.js";

// Sizes as the CSI spec and the filesystems need them, and capacity accounting against a
// real (small) filesystem holding the volumes directory.

const MiB = 1024 * 1024;
const run = createRunner({ logger: createLogger({ component: "test", level: "silent" }) });
const mount = (fs_type = "ext4") => ({ mount: { fs_type }, access_mode: { mode: "SINGLE_NODE_WRITER" as const } });
const block = { block: {}, access_mode: { mode: "SINGLE_NODE_WRITER" as const } };

describe("sizes", () => {
  const h = new PluginHarness("cloak-host-sizes-");
  beforeAll(() => h.setUp());
  afterAll(() => h.tearDown());

  const create = (name: string, range: object, capability: object = mount(), parameters: Record<string, string> = {}) =>
    h.controller("CreateVolume", { name, capacity_range: range, volume_capabilities: [capability], parameters });
  const diskSize = async (id: string): Promise<number> => (await stat(join(h.plugin.volumesDir, `${id}.img`))).size;

  it.each([
    ["ext4", mount(), {}, 8 * MiB],
    ["xfs, named by the capability", mount("xfs"), {}, 300 * MiB],
    ["xfs, named by the StorageClass", mount(""), { fsType: "xfs" }, 300 * MiB],
    ["a block volume", block, {}, 4096],
  ])("raises a 1-byte request to the smallest %s volume, and reports that capacity", async (name, capability, parameters, capacity) => {
    const { volume } = await create(`pvc-tiny-${name.replace(/\W+/g, "-")}`, { required_bytes: 1 }, capability, parameters);
    expect(Number(volume!.capacity_bytes)).toBe(capacity);
    expect(await diskSize(volume!.volume_id)).toBe(16 * MiB + capacity);
  });

  it("answers OutOfRange when limit_bytes forbids the filesystem's minimum", async () => {
    await expect(create("pvc-tiny-limited", { required_bytes: 1, limit_bytes: 4 * MiB })).rejects.toMatchObject({
      code: status.OUT_OF_RANGE,
      details: expect.stringMatching(/smallest this volume's filesystem can be made on is 8388608 bytes/),
    });
  });

  it("reports an unaligned size as asked, on a disk of whole sectors", async () => {
    const { volume } = await create("pvc-odd", { required_bytes: 64 * MiB + 1 });
    expect(volume!.capacity_bytes).toBe(String(64 * MiB + 1));
    expect(await diskSize(volume!.volume_id)).toBe(80 * MiB + 4096);
    const expanded = await h.controller("ControllerExpandVolume", { volume_id: volume!.volume_id, capacity_range: { required_bytes: 96 * MiB + 5 } });
    expect(expanded.capacity_bytes).toBe(String(96 * MiB + 5));
    expect(await diskSize(volume!.volume_id)).toBe(112 * MiB + 4096);
  });

  it("answers OutOfRange, not InvalidArgument, for a capacity no volume can have", async () => {
    const exbibyte = String(2n ** 60n);
    await expect(create("pvc-eib", { required_bytes: exbibyte })).rejects.toMatchObject({ code: status.OUT_OF_RANGE });
    // Representable, but more than this node's volumes directory can ever hold.
    await expect(create("pvc-pib", { required_bytes: String(2 ** 50) })).rejects.toMatchObject({
      code: status.OUT_OF_RANGE,
      details: expect.stringMatching(/more than node test-node can ever provide/),
    });
    const { volume } = await create("pvc-grow-huge", { required_bytes: 64 * MiB });
    await expect(
      h.controller("ControllerExpandVolume", { volume_id: volume!.volume_id, capacity_range: { required_bytes: exbibyte } }),
    ).rejects.toMatchObject({ code: status.OUT_OF_RANGE });
    // A huge limit limits nothing.
    const limited = await create("pvc-huge-limit", { required_bytes: 64 * MiB, limit_bytes: String(2n ** 62n) });
    expect(limited.volume!.capacity_bytes).toBe(String(64 * MiB));
  });

  it("answers AlreadyExists for an existing name with another capacity, even when the new range is also unsatisfiable", async () => {
    await create("pvc-name-first", { required_bytes: 64 * MiB });
    await expect(create("pvc-name-first", { required_bytes: 128 * MiB, limit_bytes: 64 * MiB })).rejects.toMatchObject({
      code: status.ALREADY_EXISTS,
    });
    await expect(create("pvc-name-first", { required_bytes: String(2n ** 60n) })).rejects.toMatchObject({ code: status.OUT_OF_RANGE });
  });

  it("answers a clone's retry with the clone after its source was deleted", async () => {
    const source = await create("pvc-clone-source", { required_bytes: 64 * MiB });
    const request = {
      name: "pvc-clone-of-deleted",
      capacity_range: { required_bytes: 64 * MiB },
      volume_capabilities: [mount()],
      volume_content_source: { volume: { volume_id: source.volume!.volume_id } },
    };
    const clone = await h.controller("CreateVolume", request);
    await h.controller("DeleteVolume", { volume_id: source.volume!.volume_id });
    expect((await h.controller("CreateVolume", request)).volume?.volume_id).toBe(clone.volume?.volume_id);
  });
});

describe("capacity accounting on a 256 MiB filesystem", () => {
  const h = new PluginHarness("cloak-host-accounting-");
  let volumesDir = "";
  beforeAll(async () => {
    await h.setUp();
    // The volumes directory on its own small ext4, so that what it can hold is known.
    const image = join(h.root, "pool.img");
    await (await open(image, "w")).close();
    await truncate(image, 256 * MiB);
    await run({ file: "mkfs.ext4", args: ["-q", "-F", "-m", "0", image] });
    volumesDir = join(h.root, "pool");
    await mkdir(volumesDir);
    await run({ file: "mount", args: ["-o", "loop", image, volumesDir] });
    await h.restart({ volumesDir });
  });
  afterAll(() => h.tearDown());

  const create = (name: string, bytes: number) =>
    h.controller("CreateVolume", { name, capacity_range: { required_bytes: bytes }, volume_capabilities: [mount()] });
  const available = async (): Promise<number> => Number((await h.controller("GetCapacity", {})).available_capacity);

  it("counts every sparse disk in full, reports what is still promisable, and refuses beyond it", async () => {
    const before = await available();
    expect(before).toBeGreaterThan(200 * MiB);
    expect(before).toBeLessThan(240 * MiB);
    const { volume } = await create("pvc-a", 100 * MiB);
    // The disk is sparse: the filesystem's free space hardly changed, the promise did.
    const after = await available();
    expect(after).toBeGreaterThan(before - 117 * MiB);
    expect(after).toBeLessThanOrEqual(before - 115 * MiB);
    await expect(create("pvc-b", 100 * MiB)).rejects.toMatchObject({
      code: status.RESOURCE_EXHAUSTED,
      details: expect.stringMatching(/node test-node has \d+ bytes of disk left to promise \(overcommit ratio 1\); 121634816 are needed/),
    });
    // A snapshot is a full copy, and counts as one.
    await expect(h.controller("CreateSnapshot", { name: "snap-a", source_volume_id: volume!.volume_id })).rejects.toMatchObject({
      code: status.RESOURCE_EXHAUSTED,
    });
  });

  it("promises more with --overcommit-ratio", async () => {
    await h.restart({ args: ["--overcommit-ratio", "2"] });
    expect(await available()).toBeGreaterThan(300 * MiB);
    await create("pvc-b", 100 * MiB);
    await h.controller("CreateSnapshot", { name: "snap-a", source_volume_id: (await create("pvc-a", 100 * MiB)).volume!.volume_id });
  });
});
