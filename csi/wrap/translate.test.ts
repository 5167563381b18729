import type { MethodDefinition } from "@grpc/proto-loader";
import { describe, expect, it } from "vitest";
import { loadProto } from "../../lib/proto.js";
import type { ProtoGrpcType } from "../../proto/gen/csi.js";
import * as translate from "./translate.js";
import { joinFields, lenField, mapEntryKey, parseFields, stringMapEntry, varintField } from "./wire.js";

const csi = loadProto<ProtoGrpcType>("csi.proto").csi.v1;
const MiB = 1024n * 1024n;
const HEADER = 16n * MiB;

type Def = MethodDefinition<object, object, object, Record<string, unknown>>;
const method = (name: keyof typeof csi.Controller.service): Def => csi.Controller.service[name] as unknown as Def;
const encodeRequest = (name: keyof typeof csi.Controller.service, value: object): Buffer => method(name).requestSerialize(value);
const decodeRequest = (name: keyof typeof csi.Controller.service, bytes: Buffer) =>
  (method(name) as unknown as MethodDefinition<object, object, Record<string, unknown>, object>).requestDeserialize(bytes);
const encodeResponse = (name: keyof typeof csi.Controller.service, value: object): Buffer =>
  (method(name) as unknown as MethodDefinition<object, object, object, object>).responseSerialize(value);
const decodeResponse = (name: keyof typeof csi.Controller.service, bytes: Buffer) => method(name).responseDeserialize(bytes);

/** A field no CSI version has: what a newer spec's addition looks like to cloak. */
const FUTURE = lenField(99, Buffer.from("from a newer spec"));
const withFuture = (bytes: Buffer): Buffer => Buffer.concat([bytes, FUTURE.encoded]);
const hasFuture = (bytes: Buffer): boolean => parseFields(bytes).some((f) => f.number === 99 && f.encoded.equals(FUTURE.encoded));

const mountCap = { mount: { fs_type: "xfs", mount_flags: ["noatime"] }, access_mode: { mode: "SINGLE_NODE_WRITER" } };

describe("wire", () => {
  it("splits a message into fields and joins them back to the same bytes", () => {
    const bytes = encodeRequest("CreateVolume", {
      name: "pvc-1",
      capacity_range: { required_bytes: "1073741824" },
      volume_capabilities: [mountCap],
      parameters: { type: "gp3", b: "2" },
    });
    expect(joinFields(parseFields(withFuture(bytes))).equals(withFuture(bytes))).toBe(true);
  });

  it("encodes negative int64 in two's complement", () => {
    const field = varintField(1, -1n);
    expect(field.encoded).toHaveLength(11);
    expect(parseFields(field.encoded)[0]?.value).toBe((1n << 64n) - 1n);
  });

  it.each([
    ["a truncated varint", Buffer.from([0x08, 0x80])],
    ["a length past the end", Buffer.from([0x0a, 0x05, 0x61])],
    ["a group", Buffer.from([0x0b])],
  ])("refuses %s", (_name, bytes) => {
    expect(() => parseFields(bytes)).toThrow(/protobuf/);
  });
});

describe("CreateVolume's request", () => {
  const request = {
    name: "pvc-1",
    capacity_range: { required_bytes: String(1024n * MiB) },
    volume_capabilities: [mountCap, { block: {}, access_mode: { mode: "SINGLE_NODE_READER_ONLY" } }],
    parameters: { type: "gp3", "cloak.dev/integrity": "false", "cloak.dev/other": "x" },
    secrets: { token: "s3cr\u00e9t" },
    accessibility_requirements: { requisite: [{ segments: { zone: "z1" } }], preferred: [{ segments: { zone: "z1" } }] },
    volume_content_source: { snapshot: { snapshot_id: "snap/1" } },
    mutable_parameters: { iops: "3000", "cloak.dev/x": "y" },
  };
  const range = { requiredBytes: 1024n * MiB + HEADER, limitBytes: 0n };
  const original = withFuture(encodeRequest("CreateVolume", request));
  const forwarded = translate.createVolumeRequest(original, range);
  const decoded = decodeRequest("CreateVolume", forwarded);

  it("asks for the header on top, as block, with the same access modes", () => {
    expect(decoded["capacity_range"]).toEqual({ required_bytes: String(1024n * MiB + HEADER), limit_bytes: "0" });
    expect(decoded["volume_capabilities"]).toEqual([
      { block: {}, access_mode: { mode: "SINGLE_NODE_WRITER" }, access_type: "block" },
      { block: {}, access_mode: { mode: "SINGLE_NODE_READER_ONLY" }, access_type: "block" },
    ]);
  });

  it("keeps cloak's keys from the inner driver", () => {
    expect(decoded["parameters"]).toEqual({ type: "gp3" });
    expect(decoded["mutable_parameters"]).toEqual({ iops: "3000" });
  });

  it("passes secrets, topology, the content source and unknown fields byte for byte", () => {
    const fieldsOf = (bytes: Buffer, n: number) => parseFields(bytes).filter((f) => f.number === n).map((f) => f.encoded.toString("hex"));
    for (const n of [1, 5, 6, 7]) expect(fieldsOf(forwarded, n)).toEqual(fieldsOf(original, n));
    expect(hasFuture(forwarded)).toBe(true);
  });

  it("adds a capacity range where the request had none", () => {
    const bare = encodeRequest("CreateVolume", { name: "pvc-2", volume_capabilities: [mountCap] });
    expect(decodeRequest("CreateVolume", translate.createVolumeRequest(bare, range))["capacity_range"]).toEqual({
      required_bytes: String(range.requiredBytes),
      limit_bytes: "0",
    });
  });

  it("keeps unknown fields inside a capability and inside the capacity range", () => {
    const capability = Buffer.concat([encodeCapability(mountCap), FUTURE.encoded]);
    const block = translate.blockCapability(capability);
    expect(hasFuture(block)).toBe(true);
    expect(parseFields(block).map((f) => f.number)).toEqual([1, 3, 99]);
  });
});

function encodeCapability(cap: object): Buffer {
  const bytes = encodeRequest("ControllerPublishVolume", { volume_capability: cap });
  return parseFields(bytes).find((f) => f.number === 3)?.payload ?? Buffer.alloc(0);
}

describe("CreateVolume's response", () => {
  const inner = {
    volume: {
      capacity_bytes: String(1024n * MiB + HEADER),
      volume_id: "projects/p/zones/z1/disks/pvc-1",
      volume_context: { "inner/key": "v", "cloak.dev/integrity": "spoofed" },
      accessible_topology: [{ segments: { zone: "z1" } }],
      content_source: { snapshot: { snapshot_id: "snap/1" } },
    },
  };
  const volumeWithFuture = (() => {
    const bytes = encodeResponse("CreateVolume", inner);
    const vol = parseFields(bytes)[0]?.payload ?? Buffer.alloc(0);
    return joinFields([lenField(1, Buffer.concat([vol, FUTURE.encoded])), FUTURE]);
  })();
  const out = translate.createVolumeResponse(volumeWithFuture, HEADER, { "cloak.dev/integrity": "true" });
  const decoded = decodeResponse("CreateVolume", out) as { volume: Record<string, unknown> };

  it("reports the capacity less the header and adds cloak's keys in place of any the inner driver sent", () => {
    expect(decoded.volume["capacity_bytes"]).toBe(String(1024n * MiB));
    expect(decoded.volume["volume_context"]).toEqual({ "inner/key": "v", "cloak.dev/integrity": "true" });
    const volume = parseFields(parseFields(out).find((f) => f.number === 1)?.payload ?? Buffer.alloc(0));
    expect(volume.filter((f) => f.number === 3).map(mapEntryKey)).toEqual(["inner/key", "cloak.dev/integrity"]);
  });

  it("keeps the id, topology, content source and unknown fields (in the volume and beside it)", () => {
    expect(decoded.volume["volume_id"]).toBe(inner.volume.volume_id);
    const volumeOf = (bytes: Buffer) => parseFields(parseFields(bytes).find((f) => f.number === 1)?.payload ?? Buffer.alloc(0));
    for (const n of [2, 4, 5, 99]) {
      expect(volumeOf(out).filter((f) => f.number === n).map((f) => f.encoded.toString("hex"))).toEqual(
        volumeOf(volumeWithFuture).filter((f) => f.number === n).map((f) => f.encoded.toString("hex")),
      );
    }
    expect(hasFuture(out)).toBe(true);
  });

  it("leaves an unknown (zero) capacity unknown", () => {
    const zero = encodeResponse("CreateVolume", { volume: { volume_id: "v" } });
    const again = decodeResponse("CreateVolume", translate.createVolumeResponse(zero, HEADER, {})) as { volume: Record<string, unknown> };
    expect(again.volume["capacity_bytes"]).toBe("0");
  });
});

describe("other rewrites", () => {
  it("ControllerPublishVolume: block capability, cloak's context keys dropped, the rest as it was", () => {
    const original = withFuture(
      encodeRequest("ControllerPublishVolume", {
        volume_id: "v/1",
        node_id: "i-123",
        volume_capability: mountCap,
        readonly: true,
        secrets: { a: "b" },
        volume_context: { k: "v", "cloak.dev/integrity": "true" },
      }),
    );
    const out = translate.controllerPublishRequest(original);
    expect(decodeRequest("ControllerPublishVolume", out)).toMatchObject({
      volume_id: "v/1",
      node_id: "i-123",
      readonly: true,
      secrets: { a: "b" },
      volume_context: { k: "v" },
      volume_capability: { block: {}, access_mode: { mode: "SINGLE_NODE_WRITER" } },
    });
    expect(hasFuture(out)).toBe(true);
  });

  it("ControllerExpandVolume: the header on top of both bounds; the answer less it and always node expansion", () => {
    const out = translate.expandRequest(
      encodeRequest("ControllerExpandVolume", { volume_id: "v", capacity_range: { required_bytes: "100", limit_bytes: "200" } }),
      { requiredBytes: 100n + HEADER, limitBytes: 200n + HEADER },
    );
    expect(decodeRequest("ControllerExpandVolume", out)["capacity_range"]).toEqual({
      required_bytes: String(100n + HEADER),
      limit_bytes: String(200n + HEADER),
    });
    const answer = translate.expandResponse(encodeResponse("ControllerExpandVolume", { capacity_bytes: String(HEADER + 300n) }), HEADER);
    expect(decodeResponse("ControllerExpandVolume", answer)).toEqual({ capacity_bytes: "300", node_expansion_required: true });
  });

  it("ListVolumes and ListSnapshots: every entry's size less the header", () => {
    const volumes = encodeResponse("ListVolumes", {
      entries: [
        { volume: { volume_id: "a", capacity_bytes: String(HEADER + 1n) }, status: { published_node_ids: ["n1"] } },
        { volume: { volume_id: "b", capacity_bytes: String(HEADER + 2n) } },
      ],
      next_token: "t",
    });
    expect(decodeResponse("ListVolumes", translate.listVolumesResponse(volumes, HEADER))).toMatchObject({
      entries: [
        { volume: { volume_id: "a", capacity_bytes: "1" }, status: { published_node_ids: ["n1"] } },
        { volume: { volume_id: "b", capacity_bytes: "2" } },
      ],
      next_token: "t",
    });
    const snapshots = encodeResponse("ListSnapshots", { entries: [{ snapshot: { snapshot_id: "s", size_bytes: String(HEADER + 5n), ready_to_use: true } }] });
    expect(decodeResponse("ListSnapshots", translate.listSnapshotsResponse(snapshots, HEADER))).toMatchObject({
      entries: [{ snapshot: { snapshot_id: "s", size_bytes: "5", ready_to_use: true } }],
    });
  });

  it("GetCapacity: available and the volume size bounds less the header, never below zero", () => {
    const answer = encodeResponse("GetCapacity", {
      available_capacity: String(HEADER * 4n),
      maximum_volume_size: { value: String(HEADER * 2n) },
      minimum_volume_size: { value: "1" },
    });
    expect(decodeResponse("GetCapacity", translate.getCapacityResponse(answer, HEADER))).toMatchObject({
      available_capacity: String(HEADER * 3n),
      maximum_volume_size: { value: String(HEADER) },
      minimum_volume_size: { value: "0" },
    });
  });

  it("GetCapacity and ValidateVolumeCapabilities: block capabilities, cloak's keys dropped", () => {
    const out = translate.getCapacityRequest(encodeRequest("GetCapacity", { volume_capabilities: [mountCap], parameters: { a: "1", "cloak.dev/integrity": "true" } }));
    expect(decodeRequest("GetCapacity", out)).toMatchObject({ volume_capabilities: [{ block: {} }], parameters: { a: "1" } });
    const validate = translate.validateRequest(
      encodeRequest("ValidateVolumeCapabilities", {
        volume_id: "v",
        volume_context: { "cloak.dev/integrity": "true", k: "v" },
        volume_capabilities: [mountCap],
        parameters: { "cloak.dev/integrity": "true" },
        mutable_parameters: { "cloak.dev/z": "1", m: "1" },
      }),
    );
    expect(decodeRequest("ValidateVolumeCapabilities", validate)).toMatchObject({
      volume_context: { k: "v" },
      volume_capabilities: [{ block: {} }],
      parameters: {},
      mutable_parameters: { m: "1" },
    });
  });

  it("keeps a map entry's other fields when filtering on its key", () => {
    const entry = stringMapEntry(4, "keep", "v");
    const out = translate.createSnapshotRequest(joinFields([entry, stringMapEntry(4, "cloak.dev/x", "y")]));
    expect(out.equals(entry.encoded)).toBe(true);
  });
});
