import { randomBytes } from "node:crypto";
import { open, readdir, readFile, stat } from "node:fs/promises";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { status } from "@grpc/grpc-js";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createRunner } from "../../../lib/exec.js";
import { createLogger } from "../../../lib/log.js";
import * as blkid from "../../../csi/tools/blkid.js";
import { createKeyDir } from "../../support/key-dir.js";
import { startPlugin, type RunningPlugin } from "../../support/csi-plugin.js";
import { scrubTree } from "../../support/scrub.js";

// The Controller service and the local disk source on this machine: everything here is files,
// records and loop devices, so it needs no device-mapper. Crash consistency is tested by
// killing the real process at each step (failpoints) and restarting it.

const MiB = 1024 * 1024;
const run = createRunner({ logger: createLogger({ component: "test", level: "silent" }) });
const capability = { mount: { fs_type: "ext4" }, access_mode: { mode: "SINGLE_NODE_WRITER" as const } };

let root: string;
let keyDir: string;
let plugin: RunningPlugin;
const dir = (): string => join(root, "plugin");

async function restart(env: Record<string, string> = {}): Promise<void> {
  await plugin?.stop("SIGKILL");
  plugin = await startPlugin({ dir: dir(), keyDir, env });
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "cloak-host-controller-"));
  keyDir = await createKeyDir(join(root, "keys"));
  await restart();
});
afterAll(async () => {
  await plugin?.stop("SIGKILL");
  await scrubTree(root);
  await rm(root, { recursive: true, force: true });
});

function create(name: string, size = 64 * MiB, parameters: Record<string, string> = {}, extra: object = {}) {
  return plugin.client.controller("CreateVolume", {
    name,
    capacity_range: { required_bytes: size },
    volume_capabilities: [capability],
    parameters,
    ...extra,
  });
}

async function diskSize(volumeId: string): Promise<number> {
  return (await stat(join(plugin.volumesDir, `${volumeId}.img`))).size;
}

async function recordsOf(kind: "volumes" | "snapshots"): Promise<string[]> {
  return (await readdir(join(plugin.volumesDir, "records", kind))).sort();
}

describe("CreateVolume", () => {
  it("creates a sparse disk with the LUKS header on top of the requested size", async () => {
    const { volume } = await create("pvc-size");
    expect(volume).toMatchObject({
      capacity_bytes: String(64 * MiB),
      volume_context: { fsType: "ext4", integrity: "false" },
      accessible_topology: [{ segments: { "topology.csi.cloak.dev/node": "test-node" } }],
    });
    expect(await diskSize(volume!.volume_id)).toBe(80 * MiB);
  });

  it("is idempotent by name and refuses the same name with another size or parameters", async () => {
    const first = await create("pvc-twice");
    const again = await create("pvc-twice");
    expect(again.volume?.volume_id).toBe(first.volume?.volume_id);
    await expect(create("pvc-twice", 128 * MiB)).rejects.toMatchObject({ code: status.ALREADY_EXISTS });
    await expect(create("pvc-twice", 64 * MiB, { fsType: "xfs" })).rejects.toMatchObject({ code: status.ALREADY_EXISTS });
  });

  it("refuses unknown parameters, naming the accepted ones", async () => {
    await expect(create("pvc-bad-param", 64 * MiB, { cipher: "aes" })).rejects.toMatchObject({
      code: status.INVALID_ARGUMENT,
      details: "unknown parameters cipher; accepted: fsType, integrity",
    });
  });

  it("accepts the parameters sidecars add and records integrity", async () => {
    const { volume } = await create("pvc-integrity", 64 * MiB, { integrity: "true", "csi.storage.k8s.io/pvc/name": "data" });
    // The key id the controller chose (the LUKS UUID the node formats with) travels with them.
    expect(volume?.volume_context).toEqual({ fsType: "ext4", integrity: "true", "cloak.dev/key-id": expect.stringMatching(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/) });
    // Room for dm-integrity's tags and journal on top of the header and the capacity.
    expect(await diskSize(volume!.volume_id)).toBeGreaterThan(80 * MiB);
  });

  it("refuses a size it cannot give exactly when required equals limit", async () => {
    await expect(
      plugin.client.controller("CreateVolume", {
        name: "pvc-odd",
        capacity_range: { required_bytes: MiB + 1, limit_bytes: MiB + 1 },
        volume_capabilities: [capability],
      }),
    ).rejects.toMatchObject({ code: status.OUT_OF_RANGE });
  });

  it("refuses topology that excludes this node", async () => {
    await expect(
      create("pvc-elsewhere", 64 * MiB, {}, {
        accessibility_requirements: { requisite: [{ segments: { "topology.csi.cloak.dev/node": "other-node" } }] },
      }),
    ).rejects.toMatchObject({ code: status.RESOURCE_EXHAUSTED });
  });
});

describe("expansion", () => {
  it("grows the disk and asks for node expansion", async () => {
    const { volume } = await create("pvc-grow");
    const response = await plugin.client.controller("ControllerExpandVolume", {
      volume_id: volume!.volume_id,
      capacity_range: { required_bytes: 256 * MiB },
    });
    expect(response).toEqual({ capacity_bytes: String(256 * MiB), node_expansion_required: true });
    expect(await diskSize(volume!.volume_id)).toBe(272 * MiB);
  });

  it("answers NotFound for an id it never issued, and Unavailable for a volume another node's plugin may hold", async () => {
    await expect(
      plugin.client.controller("ControllerExpandVolume", { volume_id: "pvc-unknown", capacity_range: { required_bytes: 256 * MiB } }),
    ).rejects.toMatchObject({ code: status.NOT_FOUND });
    await expect(
      plugin.client.controller("ControllerExpandVolume", { volume_id: "vol-on-another-node", capacity_range: { required_bytes: 256 * MiB } }),
    ).rejects.toMatchObject({ code: status.UNAVAILABLE, details: expect.stringMatching(/is not on node test-node/) });
  });

  it("refuses to expand an integrity volume, saying why", async () => {
    const { volume } = await create("pvc-integrity", 64 * MiB, { integrity: "true" });
    await expect(
      plugin.client.controller("ControllerExpandVolume", { volume_id: volume!.volume_id, capacity_range: { required_bytes: 256 * MiB } }),
    ).rejects.toMatchObject({
      code: status.FAILED_PRECONDITION,
      details: expect.stringMatching(/uses dm-integrity, which cannot be expanded/),
    });
  });
});

describe("listing and capacity", () => {
  it("pages through volumes with tokens and refuses a foreign token", async () => {
    const all = await plugin.client.controller("ListVolumes", {});
    expect(all.entries.length).toBeGreaterThanOrEqual(4);
    const seen: string[] = [];
    let token = "";
    do {
      const pageOf = await plugin.client.controller("ListVolumes", { max_entries: 2, starting_token: token });
      seen.push(...pageOf.entries.map((e) => e.volume!.volume_id));
      token = pageOf.next_token;
    } while (token !== "");
    expect(seen).toEqual(all.entries.map((e) => e.volume!.volume_id));
    await expect(plugin.client.controller("ListVolumes", { starting_token: "bogus" })).rejects.toMatchObject({ code: status.ABORTED });
  });

  it("reports free space", async () => {
    const capacity = await plugin.client.controller("GetCapacity", {});
    expect(Number(capacity.available_capacity)).toBeGreaterThan(0);
  });
});

describe("DeleteVolume", () => {
  it("refuses while the volume is staged, then crypto-erases: the header is gone before the file is", async () => {
    const { volume } = await create("pvc-erase");
    const id = volume!.volume_id;
    const file = join(plugin.volumesDir, `${id}.img`);
    // A stage killed right after formatting: the disk holds a header and is still attached
    // (what opens it is the VM tier's business).
    const staging = join(plugin.kubeletDir, "staging", id);
    await restart({ CLOAK_FAILPOINTS: `stage:after-format@${id}` });
    await expect(
      plugin.client.node("NodeStageVolume", { volume_id: id, staging_target_path: staging, volume_capability: capability }),
    ).rejects.toMatchObject({ code: status.UNAVAILABLE });
    await restart();
    expect(blkid.parseProbe(await run(blkid.probe(file)))).toMatchObject({ kind: "found", fields: { TYPE: "crypto_LUKS" } });

    await expect(plugin.client.controller("DeleteVolume", { volume_id: id })).rejects.toMatchObject({
      code: status.FAILED_PRECONDITION,
      details: expect.stringMatching(/is staged on node test-node; unstage it first/),
    });
    await plugin.client.node("NodeUnstageVolume", { volume_id: id, staging_target_path: staging });

    // Killed between the erase and the removal: what is left on disk is noise.
    await restart({ CLOAK_FAILPOINTS: `delete:after-erase@${id}` });
    await expect(plugin.client.controller("DeleteVolume", { volume_id: id })).rejects.toMatchObject({ code: status.UNAVAILABLE });
    expect(blkid.parseProbe(await run(blkid.probe(file)))).toEqual({ kind: "empty" });
    const isLuks = await run({ file: "cryptsetup", args: ["isLuks", file], okExitCodes: [1] });
    expect(isLuks.exitCode).toBe(1);
    const dump = await run({ file: "cryptsetup", args: ["luksDump", file], okExitCodes: [1] });
    expect(dump.exitCode).toBe(1);

    await restart();
    await plugin.client.controller("DeleteVolume", { volume_id: id });
    await expect(stat(file)).rejects.toMatchObject({ code: "ENOENT" });
    expect(await recordsOf("volumes")).not.toContain(`${id}.json`);
    // Deleting again, or deleting something that never existed, is success.
    await plugin.client.controller("DeleteVolume", { volume_id: id });
    await plugin.client.controller("DeleteVolume", { volume_id: "vol-never-existed" });
  });
});

describe("snapshots and clones", () => {
  it("snapshots a volume, lists by id and source, restores and clones it", async () => {
    const { volume } = await create("pvc-source");
    const source = volume!.volume_id;
    const { snapshot } = await plugin.client.controller("CreateSnapshot", { name: "snap-1", source_volume_id: source });
    expect(snapshot).toMatchObject({ source_volume_id: source, size_bytes: String(64 * MiB), ready_to_use: true });
    const again = await plugin.client.controller("CreateSnapshot", { name: "snap-1", source_volume_id: source });
    expect(again.snapshot?.snapshot_id).toBe(snapshot?.snapshot_id);
    const other = await create("pvc-other");
    await expect(
      plugin.client.controller("CreateSnapshot", { name: "snap-1", source_volume_id: other.volume!.volume_id }),
    ).rejects.toMatchObject({ code: status.ALREADY_EXISTS });

    const byId = await plugin.client.controller("ListSnapshots", { snapshot_id: snapshot!.snapshot_id });
    expect(byId.entries.map((e) => e.snapshot?.snapshot_id)).toEqual([snapshot!.snapshot_id]);
    const bySource = await plugin.client.controller("ListSnapshots", { source_volume_id: source });
    expect(bySource.entries).toHaveLength(1);
    expect((await plugin.client.controller("ListSnapshots", { snapshot_id: "snap-none" })).entries).toEqual([]);

    const restored = await create("pvc-restored", 64 * MiB, {}, { volume_content_source: { snapshot: { snapshot_id: snapshot!.snapshot_id } } });
    expect(restored.volume?.content_source).toEqual({ snapshot: { snapshot_id: snapshot!.snapshot_id }, type: "snapshot" });
    const clone = await create("pvc-clone", 128 * MiB, {}, { volume_content_source: { volume: { volume_id: source } } });
    expect(await diskSize(clone.volume!.volume_id)).toBe(144 * MiB);

    await expect(
      create("pvc-from-nothing", 64 * MiB, {}, { volume_content_source: { snapshot: { snapshot_id: "snap-missing" } } }),
    ).rejects.toMatchObject({ code: status.NOT_FOUND });
    await expect(
      create("pvc-smaller", 32 * MiB, {}, { volume_content_source: { volume: { volume_id: source } } }),
    ).rejects.toMatchObject({ code: status.OUT_OF_RANGE });

    await plugin.client.controller("DeleteSnapshot", { snapshot_id: snapshot!.snapshot_id });
    await plugin.client.controller("DeleteSnapshot", { snapshot_id: snapshot!.snapshot_id });
    expect((await plugin.client.controller("ListSnapshots", { source_volume_id: source })).entries).toEqual([]);
  });
});

describe("a plugin killed at any step", () => {
  // Data written before each crash, read back after each retry: on a volume no call touches
  // (a node crash hits every volume), and on the volumes being snapshotted or grown.
  const neighbour = { id: "", data: randomBytes(MiB) };
  const DATA_AT = 16 * MiB + 4096;
  async function writeData(volumeId: string, data: Buffer): Promise<void> {
    const handle = await open(join(plugin.volumesDir, `${volumeId}.img`), "r+");
    await handle.write(data, 0, data.length, DATA_AT);
    await handle.close();
  }
  async function readData(file: string, length: number): Promise<Buffer> {
    const handle = await open(file, "r");
    const buffer = Buffer.alloc(length);
    await handle.read(buffer, 0, length, DATA_AT);
    await handle.close();
    return buffer;
  }
  beforeAll(async () => {
    neighbour.id = (await create("pvc-crash-neighbour")).volume!.volume_id;
    await writeData(neighbour.id, neighbour.data);
  });
  afterEach(async () => {
    expect((await readData(join(plugin.volumesDir, `${neighbour.id}.img`), MiB)).equals(neighbour.data)).toBe(true);
  });

  it.each(["create:after-record", "create:after-disk"])("finishes CreateVolume on retry after %s, with one volume", async (failpoint) => {
    const name = `pvc-crash-${failpoint.replace(/\W/g, "-")}`;
    await restart({ CLOAK_FAILPOINTS: failpoint });
    await expect(create(name)).rejects.toMatchObject({ code: status.UNAVAILABLE });
    await restart();
    const { volume } = await create(name);
    const records = await Promise.all(
      (await recordsOf("volumes")).map(async (f) => JSON.parse(await readFile(join(plugin.volumesDir, "records", "volumes", f), "utf8")) as { name: string; state: string }),
    );
    expect(records.filter((r) => r.name === name)).toEqual([expect.objectContaining({ state: "ready" })]);
    expect(await diskSize(volume!.volume_id)).toBe(80 * MiB);
  });

  it("finishes DeleteVolume on retry after marking it", async () => {
    const { volume } = await create("pvc-crash-delete");
    await restart({ CLOAK_FAILPOINTS: "delete:after-mark" });
    await expect(plugin.client.controller("DeleteVolume", { volume_id: volume!.volume_id })).rejects.toMatchObject({ code: status.UNAVAILABLE });
    await restart();
    // A volume being deleted is no longer listed, and its name cannot be reused until it is gone.
    const listed = (await plugin.client.controller("ListVolumes", {})).entries.map((e) => e.volume?.volume_id);
    expect(listed).not.toContain(volume!.volume_id);
    await plugin.client.controller("DeleteVolume", { volume_id: volume!.volume_id });
    await expect(stat(join(plugin.volumesDir, `${volume!.volume_id}.img`))).rejects.toMatchObject({ code: "ENOENT" });
  });

  it("finishes a snapshot on retry after recording it, with the source's data", async () => {
    const { volume } = await create("pvc-crash-snap-source");
    const data = randomBytes(MiB);
    await writeData(volume!.volume_id, data);
    await restart({ CLOAK_FAILPOINTS: "snapshot:after-record" });
    await expect(
      plugin.client.controller("CreateSnapshot", { name: "snap-crash", source_volume_id: volume!.volume_id }),
    ).rejects.toMatchObject({ code: status.UNAVAILABLE });
    await restart();
    const { snapshot } = await plugin.client.controller("CreateSnapshot", { name: "snap-crash", source_volume_id: volume!.volume_id });
    expect(snapshot?.ready_to_use).toBe(true);
    expect((await recordsOf("snapshots")).filter((f) => f.startsWith(snapshot!.snapshot_id))).toHaveLength(1);
    expect((await readData(join(plugin.volumesDir, "snapshots", `${snapshot!.snapshot_id}.img`), MiB)).equals(data)).toBe(true);
    expect((await readData(join(plugin.volumesDir, `${volume!.volume_id}.img`), MiB)).equals(data)).toBe(true);
  });

  it("records a grown disk after a crash between growing and recording, keeping its data", async () => {
    const { volume } = await create("pvc-crash-grow");
    const data = randomBytes(MiB);
    await writeData(volume!.volume_id, data);
    await restart({ CLOAK_FAILPOINTS: "expand:after-grow" });
    await expect(
      plugin.client.controller("ControllerExpandVolume", { volume_id: volume!.volume_id, capacity_range: { required_bytes: 128 * MiB } }),
    ).rejects.toMatchObject({ code: status.UNAVAILABLE });
    await restart();
    const response = await plugin.client.controller("ControllerExpandVolume", {
      volume_id: volume!.volume_id,
      capacity_range: { required_bytes: 128 * MiB },
    });
    expect(response.capacity_bytes).toBe(String(128 * MiB));
    const got = await plugin.client.controller("ControllerGetVolume", { volume_id: volume!.volume_id });
    expect(got.volume?.capacity_bytes).toBe(String(128 * MiB));
    expect((await readData(join(plugin.volumesDir, `${volume!.volume_id}.img`), MiB)).equals(data)).toBe(true);
  });

  it("leaves no temporary files behind", async () => {
    const files = [...(await readdir(plugin.volumesDir)), ...(await recordsOf("volumes")), ...(await recordsOf("snapshots"))];
    expect(files.filter((f) => f.startsWith(".tmp-") || f.endsWith(".partial") || f.endsWith(".progress"))).toEqual([]);
  });
});
