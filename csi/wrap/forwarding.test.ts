import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { status } from "@grpc/grpc-js";
import type { MethodDefinition } from "@grpc/proto-loader";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createRunner } from "../../lib/exec.js";
import { toGrpcHandlers } from "../../lib/grpc-handler.js";
import { startGrpcServer, type RunningServer } from "../../lib/grpc-server.js";
import { createLogger } from "../../lib/log.js";
import { loadProto } from "../../lib/proto.js";
import type { ProtoGrpcType } from "../../proto/gen/csi.js";
import type { ControllerHandlers } from "../../proto/gen/csi/v1/Controller.js";
import type { NodeHandlers } from "../../proto/gen/csi/v1/Node.js";
import { connectCsi, type CsiClient } from "../../test/support/csi-client.js";
import { startScriptedCsiServer, type ScriptedCsiServer } from "../../test/support/scripted-csi-server.js";
import { LuksDevices } from "../luks/luks-device.js";
import { createNodeService } from "../node/node-service.js";
import { VolumeLocks } from "../volume-locks.js";
import type { KeyLineage } from "../keys/lineage.js";
import type { LineageMember } from "../../lib/key-lineage.js";
import { innerPaths } from "./layout.js";
import { NO_KEYS } from "./no-keys.js";
import { wrapServices } from "./services.js";
import { lenField, parseFields } from "./wire.js";

// The wrapper's plumbing through real gRPC on unix sockets: a caller, cloak's wrap services
// as csi/main.ts assembles them, and a scripted inner server that records the bytes it gets.
// What a real inner driver does with them is the VM tier's business (test/vm/wrap).

const csi = loadProto<ProtoGrpcType>("csi.proto").csi.v1;
const log = createLogger({ component: "test", level: "silent" });
const MiB = 1024n * 1024n;
const HEADER = 16n * MiB;
const FUTURE = lenField(99, Buffer.from("a field of a newer CSI spec"));

let dir: string;
let inner: ScriptedCsiServer;
let server: RunningServer;
let client: CsiClient;
let kubelet: string;
let innerRoot: string;

/**
 * The key lineage as a map (the real one, against a real API server, is tested in
 * test/host/keyservice/authz.test.ts and through the wrapper in test/deploy/wrap.test.ts).
 */
const records = new Map<string, { members: Set<string>; revoked: boolean }>();
const memberKey = (m: LineageMember) => `${m.kind}:${m.id}`;
const lineage: KeyLineage = {
  kind: "memory",
  async bind({ keyId, member }) {
    const record = records.get(keyId) ?? { members: new Set<string>(), revoked: false };
    if (record.revoked) throw new Error(`key ${keyId} is revoked`);
    record.members.add(memberKey(member));
    records.set(keyId, record);
  },
  async release({ member }) {
    for (const record of records.values()) {
      if (!record.members.delete(memberKey(member))) continue;
      record.revoked = record.members.size === 0;
      return { revoked: record.revoked };
    }
    return { revoked: false };
  },
  async find({ member }) {
    return [...records].find(([, r]) => r.members.has(memberKey(member)))?.[0];
  },
};
const SEEDED_KEY = "00000000-0000-4000-8000-000000000001";

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "cloak-wrap-forwarding-"));
  kubelet = join(dir, "kubelet");
  innerRoot = join(kubelet, "plugins", "kubernetes.io", "csi", "wrapped.cloak.dev", "inner");
  inner = await startScriptedCsiServer(join(dir, "inner.sock"));
  const run = createRunner({ logger: log });
  const wrap = wrapServices({ endpoint: { kind: "unix", path: join(dir, "inner.sock") }, innerRoot, csi, run, log, capabilitiesTtlMs: 0 });
  const node = createNodeService({
    nodeId: "unused",
    maxVolumesPerNode: 0,
    allowedPathRoots: [kubelet],
    run,
    luks: new LuksDevices({ run, keys: NO_KEYS, bypassWorkqueues: false }),
    disks: wrap.nodeSource(),
    locks: new VolumeLocks(),
  });
  server = await startGrpcServer({
    endpoint: { kind: "unix", path: join(dir, "cloak.sock") },
    logger: log,
    services: [
      {
        definition: wrap.controllerDefinition,
        implementation: toGrpcHandlers<ControllerHandlers>("csi.v1.Controller", wrap.controllerDefinition, wrap.controller({ lineage, driver: "wrapped.cloak.dev" }), log),
      },
      { definition: wrap.nodeDefinition, implementation: toGrpcHandlers<NodeHandlers>("csi.v1.Node", wrap.nodeDefinition, node, log) },
    ],
    drainMs: 100,
  });
  client = connectCsi(join(dir, "cloak.sock"));
});

afterAll(async () => {
  client?.close();
  await server?.stop();
  await inner?.stop();
  await rm(dir, { recursive: true, force: true });
});

beforeEach(() => {
  inner.calls.length = 0;
  inner.scripts.clear();
  records.clear();
  // A volume made earlier, with its key on record.
  records.set(SEEDED_KEY, { members: new Set(["volume:v"]), revoked: false });
});

type AnyDef = MethodDefinition<object, object, object, object>;
const encodeResponse = (service: "Controller" | "Node", method: string, value: object): Buffer =>
  (csi[service].service as unknown as Record<string, AnyDef>)[method]?.responseSerialize(value) ?? Buffer.alloc(0);
const encodeRequest = (service: "Controller" | "Node", method: string, value: object): Buffer =>
  (csi[service].service as unknown as Record<string, AnyDef>)[method]?.requestSerialize(value) ?? Buffer.alloc(0);
const hex = (fields: ReturnType<typeof parseFields>, n: number) => fields.filter((f) => f.number === n).map((f) => f.encoded.toString("hex"));

/** Calls cloak with a request given as bytes (so that it can carry fields proto-loader does not know). */
async function callRaw(service: "Controller" | "Node", method: string, bytes: Buffer, timeoutMs = 10_000): Promise<Buffer> {
  const { Client, credentials, Metadata } = await import("@grpc/grpc-js");
  const raw = new Client(`unix://${join(dir, "cloak.sock")}`, credentials.createInsecure());
  try {
    return await new Promise<Buffer>((resolve, reject) =>
      raw.makeUnaryRequest(
        `/csi.v1.${service}/${method}`,
        (b: Buffer) => b,
        (b: Buffer) => b,
        bytes,
        new Metadata(),
        { deadline: Date.now() + timeoutMs },
        (err, value) => (err ? reject(err) : resolve(value as Buffer)),
      ),
    );
  } finally {
    raw.close();
  }
}

describe("the controller forwards messages without losing fields", () => {
  const request = {
    name: "pvc-1",
    capacity_range: { required_bytes: String(100n * MiB) },
    volume_capabilities: [{ mount: { fs_type: "ext4" }, access_mode: { mode: "SINGLE_NODE_WRITER" } }],
    parameters: { type: "ssd", "cloak.dev/integrity": "false" },
    secrets: { "api-token": "t0k\u00e9n", other: "" },
    accessibility_requirements: { requisite: [{ segments: { "topology.example/zone": "z1" } }], preferred: [{ segments: { "topology.example/zone": "z1" } }] },
  };

  it("CreateVolume: secrets, topology and unknown fields byte for byte, both ways", async () => {
    const sent = Buffer.concat([encodeRequest("Controller", "CreateVolume", request), FUTURE.encoded]);
    const volume = Buffer.concat([
      encodeResponse("Controller", "CreateVolume", {
        volume: {
          volume_id: "zones/z1/disks/pvc-1",
          capacity_bytes: String(100n * MiB + HEADER),
          volume_context: { "inner/attr": "x" },
          accessible_topology: [{ segments: { "topology.example/zone": "z1" } }],
        },
      }),
      FUTURE.encoded,
    ]);
    inner.scripts.set("CreateVolume", { bytes: volume });
    const answer = await callRaw("Controller", "CreateVolume", sent);

    const [call] = inner.calls;
    expect(call?.method).toBe("CreateVolume");
    const got = parseFields(call?.bytes ?? Buffer.alloc(0));
    const original = parseFields(sent);
    for (const n of [1, 5, 7, 99]) expect(hex(got, n), `field ${n}`).toEqual(hex(original, n));
    expect(inner.decode(call!)).toMatchObject({
      capacity_range: { required_bytes: String(100n * MiB + HEADER) },
      parameters: { type: "ssd" },
      volume_capabilities: [{ block: {}, access_mode: { mode: "SINGLE_NODE_WRITER" } }],
    });

    const back = parseFields(answer);
    expect(hex(back, 99)).toEqual([FUTURE.encoded.toString("hex")]);
    const vol = parseFields(back.find((f) => f.number === 1)?.payload ?? Buffer.alloc(0));
    const innerVol = parseFields(parseFields(volume).find((f) => f.number === 1)?.payload ?? Buffer.alloc(0));
    for (const n of [2, 5]) expect(hex(vol, n), `volume field ${n}`).toEqual(hex(innerVol, n));
    // The inner driver's context entries unchanged, then the key id cloak chose.
    expect(hex(vol, 3).slice(0, -1)).toEqual(hex(innerVol, 3));
    const keyId = (csi.Controller.service.CreateVolume.responseDeserialize(answer).volume?.volume_context ?? {})["cloak.dev/key-id"];
    expect(keyId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
  });

  it("ControllerPublishVolume: publish_context comes back byte for byte", async () => {
    const context = encodeResponse("Controller", "ControllerPublishVolume", { publish_context: { devicePath: "/dev/xvdba", lun: "3" } });
    inner.scripts.set("ControllerPublishVolume", { bytes: Buffer.concat([context, FUTURE.encoded]) });
    const answer = await client.controller("ControllerPublishVolume", {
      volume_id: "zones/z1/disks/pvc-1",
      node_id: "i-0abc",
      volume_capability: { mount: { fs_type: "ext4" }, access_mode: { mode: "SINGLE_NODE_WRITER" } },
      volume_context: { "inner/attr": "x", "cloak.dev/integrity": "true" },
    });
    expect(answer.publish_context).toEqual({ devicePath: "/dev/xvdba", lun: "3" });
    expect(inner.decode(inner.calls[0]!)).toMatchObject({
      node_id: "i-0abc",
      volume_context: { "inner/attr": "x" },
      volume_capability: { block: {} },
    });
  });

  it("gives the inner call the caller's deadline less a margin", async () => {
    inner.scripts.set("DeleteVolume", { response: {} });
    const before = Date.now();
    await client.controller("DeleteVolume", { volume_id: "v" }, { timeoutMs: 20_000 });
    const deadline = inner.calls[0]?.deadline ?? 0;
    expect(deadline).toBeGreaterThan(before + 10_000);
    expect(deadline).toBeLessThanOrEqual(before + 20_000 - 2_000 + 50);
  });
});

describe("key binding", () => {
  const MOUNT = [{ mount: { fs_type: "ext4" }, access_mode: { mode: "SINGLE_NODE_WRITER" as const } }];
  const created = (volume_id: string) => ({ response: { volume: { volume_id, capacity_bytes: String(64n * MiB + HEADER) } } });
  const create = async (name: string, volume_content_source?: object) =>
    (await client.controller("CreateVolume", { name, capacity_range: { required_bytes: String(64n * MiB) }, volume_capabilities: MOUNT, volume_content_source }))
      .volume?.volume_context?.["cloak.dev/key-id"];

  it("records a new volume under its inner id with a new key id, and a repeated CreateVolume keeps it", async () => {
    inner.scripts.set("CreateVolume", created("disks/a"));
    const keyId = await create("pvc-a");
    expect(keyId).toMatch(/^[0-9a-f-]{36}$/);
    expect([...(records.get(keyId ?? "")?.members ?? [])]).toEqual(["volume:disks/a"]);
    // A retry after a crash: the inner driver answers with the same disk, which keeps its key.
    expect(await create("pvc-a")).toBe(keyId);
    expect(records.size).toBe(2);
  });

  it("gives clones, snapshots and restores their source's key id", async () => {
    inner.scripts.set("CreateVolume", created("disks/clone"));
    expect(await create("pvc-clone", { volume: { volume_id: "v" } })).toBe(SEEDED_KEY);
    inner.scripts.set("CreateSnapshot", { response: { snapshot: { snapshot_id: "snaps/s1", source_volume_id: "v", ready_to_use: true } } });
    await client.controller("CreateSnapshot", { name: "snap-1", source_volume_id: "v" });
    inner.scripts.set("CreateVolume", created("disks/restored"));
    expect(await create("pvc-restored", { snapshot: { snapshot_id: "snaps/s1" } })).toBe(SEEDED_KEY);
    expect([...(records.get(SEEDED_KEY)?.members ?? [])].sort()).toEqual(["snapshot:snaps/s1", "volume:disks/clone", "volume:disks/restored", "volume:v"]);
  });

  it("refuses to copy a volume or snapshot without a key record, before the inner driver copies anything", async () => {
    inner.scripts.set("CreateVolume", created("disks/x"));
    inner.scripts.set("CreateSnapshot", { response: { snapshot: { snapshot_id: "snaps/x", source_volume_id: "imported" } } });
    await expect(create("pvc-x", { volume: { volume_id: "imported" } })).rejects.toMatchObject({
      code: status.FAILED_PRECONDITION,
      details: expect.stringMatching(/volume imported has no key record/),
    });
    await expect(create("pvc-y", { snapshot: { snapshot_id: "snaps/unknown" } })).rejects.toMatchObject({ code: status.FAILED_PRECONDITION });
    await expect(client.controller("CreateSnapshot", { name: "s", source_volume_id: "imported" })).rejects.toMatchObject({ code: status.FAILED_PRECONDITION });
    expect(inner.calls).toEqual([]);
  });

  it("binds nothing to an inner answer without an id, which is the inner driver's fault (Internal)", async () => {
    inner.scripts.set("CreateVolume", { response: { volume: { capacity_bytes: String(64n * MiB + HEADER) } } });
    await expect(create("pvc-noid")).rejects.toMatchObject({ code: status.INTERNAL, details: expect.stringMatching(/without a volume id/) });
    expect(records.size).toBe(1);
  });

  it("releases a deleted volume's key only after the inner driver deleted it; the last one revokes it", async () => {
    inner.scripts.set("DeleteVolume", { error: { code: status.UNAVAILABLE, details: "the cloud is down" } });
    await expect(client.controller("DeleteVolume", { volume_id: "v" })).rejects.toMatchObject({ code: status.UNAVAILABLE });
    expect(records.get(SEEDED_KEY)).toMatchObject({ revoked: false });
    inner.scripts.set("DeleteVolume", { response: {} });
    await client.controller("DeleteVolume", { volume_id: "v" });
    expect(records.get(SEEDED_KEY)).toMatchObject({ revoked: true });
  });
});

describe("the inner driver's failures", () => {
  it("reach the caller with the right status and name the inner driver", async () => {
    inner.scripts.set("CreateSnapshot", { error: { code: status.UNKNOWN, details: "rpc error from a Go driver" } });
    await expect(client.controller("CreateSnapshot", { name: "s", source_volume_id: "v" })).rejects.toMatchObject({
      code: status.INTERNAL,
      details: expect.stringMatching(/inner driver unix:.*inner\.sock CreateSnapshot: rpc error from a Go driver/),
    });
    inner.scripts.set("ControllerExpandVolume", { error: { code: status.OUT_OF_RANGE, details: "too big" } });
    await expect(client.controller("ControllerExpandVolume", { volume_id: "v", capacity_range: { required_bytes: "1" } })).rejects.toMatchObject({
      code: status.OUT_OF_RANGE,
    });
  });

  it("a delete of what the inner driver does not know succeeds", async () => {
    inner.scripts.set("DeleteVolume", { error: { code: status.NOT_FOUND, details: "no such disk" } });
    await expect(client.controller("DeleteVolume", { volume_id: "gone" })).resolves.toEqual({});
  });

  it("a hung inner driver is DeadlineExceeded before the caller's own deadline", async () => {
    inner.scripts.set("ListVolumes", { hang: true });
    const started = Date.now();
    await expect(client.controller("ListVolumes", {}, { timeoutMs: 3_000 })).rejects.toMatchObject({
      code: status.DEADLINE_EXCEEDED,
      details: expect.stringMatching(/ListVolumes did not answer within/),
    });
    expect(Date.now() - started).toBeLessThan(3_000);
  });

  it("refuses multi-node writers for mount volumes without asking the inner driver", async () => {
    await expect(
      client.controller("CreateVolume", {
        name: "shared",
        volume_capabilities: [{ mount: {}, access_mode: { mode: "MULTI_NODE_MULTI_WRITER" } }],
      }),
    ).rejects.toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringMatching(/filesystem on a disk that several nodes write/) });
    expect(inner.calls).toEqual([]);
  });

  it("refuses formatting-only inner parameters and unknown cloak parameters", async () => {
    for (const parameters of [{ blocksize: "4096" }, { "cloak.dev/cipher": "aes" }] as Record<string, string>[]) {
      await expect(
        client.controller("CreateVolume", { name: "p", volume_capabilities: [{ block: {}, access_mode: { mode: "SINGLE_NODE_WRITER" } }], parameters }),
      ).rejects.toMatchObject({ code: status.INVALID_ARGUMENT });
    }
    expect(inner.calls).toEqual([]);
  });
});

describe("the node stages through the inner driver", () => {
  const volumeId = "projects/p/zones/z1/disks/pvc-1";
  const stage = {
    volume_id: volumeId,
    publish_context: { devicePath: "/dev/xvdba", "x/y": "z" },
    staging_target_path: "",
    volume_capability: { mount: { fs_type: "ext4" }, access_mode: { mode: "SINGLE_NODE_WRITER" as const } },
    secrets: { "node-stage-token": "s3cr\u00e9t" },
    volume_context: { "inner/attr": "x", "cloak.dev/integrity": "false" },
  };

  beforeAll(async () => {
    stage.staging_target_path = join(kubelet, "plugins", "kubernetes.io", "csi", "wrapped.cloak.dev", "abc", "globalmount");
    await mkdir(stage.staging_target_path, { recursive: true });
  });

  for (const staged of [true, false]) {
    it(`${staged ? "stages and publishes" : "publishes (no STAGE_UNSTAGE)"} with the caller's maps unchanged, and undoes both when the result is not a block device`, async () => {
      inner.scripts.set("NodeGetCapabilities", {
        response: { capabilities: staged ? [{ rpc: { type: "STAGE_UNSTAGE_VOLUME" } }] : [] },
      });
      for (const m of ["NodeStageVolume", "NodePublishVolume", "NodeUnpublishVolume", "NodeUnstageVolume"]) inner.scripts.set(m, { response: {} });

      await expect(client.node("NodeStageVolume", stage)).rejects.toMatchObject({
        code: status.FAILED_PRECONDITION,
        details: expect.stringMatching(/NodePublishVolume succeeded but placed nothing at/),
      });

      const methods = inner.calls.map((c) => c.method).filter((m) => m !== "NodeGetCapabilities");
      expect(methods).toEqual(staged ? ["NodeStageVolume", "NodePublishVolume", "NodeUnpublishVolume", "NodeUnstageVolume"] : ["NodePublishVolume", "NodeUnpublishVolume"]);
      const paths = innerPaths(innerRoot, volumeId);
      const sent = parseFields(encodeRequest("Node", "NodeStageVolume", { ...stage, volume_context: { "inner/attr": "x" } }));
      for (const call of inner.calls.filter((c) => c.method === "NodeStageVolume" || c.method === "NodePublishVolume")) {
        const fields = parseFields(call.bytes);
        // publish_context (2), secrets (NodeStage 5, NodePublish 7), volume_context (NodeStage 6,
        // NodePublish 8); map entries compared without their tag byte, which the field number sets.
        const [secrets, context] = call.method === "NodeStageVolume" ? [5, 6] : [7, 8];
        const entries = (f: ReturnType<typeof parseFields>, n: number) => hex(f, n).map((h) => h.slice(2)).sort();
        expect(entries(fields, 2)).toEqual(entries(sent, 2));
        expect(entries(fields, secrets)).toEqual(entries(sent, 5));
        expect(entries(fields, context)).toEqual(entries(sent, 6));
        expect(inner.decode(call)).toMatchObject({ volume_capability: { block: {}, access_mode: { mode: "SINGLE_NODE_WRITER" } } });
      }
      const publish = inner.decode(inner.calls.find((c) => c.method === "NodePublishVolume")!);
      expect(publish).toMatchObject({ target_path: paths.device, staging_target_path: staged ? paths.staging : "" });
      expect(existsSync(paths.dir)).toBe(false);
      inner.calls.length = 0;
    });
  }

  it("answers NodeGetInfo with the inner driver's bytes", async () => {
    const info = Buffer.concat([
      encodeResponse("Node", "NodeGetInfo", { node_id: "i-0abc", max_volumes_per_node: "25", accessible_topology: { segments: { "topology.example/zone": "z1" } } }),
      FUTURE.encoded,
    ]);
    inner.scripts.set("NodeGetInfo", { bytes: info });
    expect((await callRaw("Node", "NodeGetInfo", Buffer.alloc(0))).equals(info)).toBe(true);
  });
});
