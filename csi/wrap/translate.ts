import { int64Of, joinFields, lenField, mapEntryKey, parseFields, stringMapEntry, varintField, type WireField } from "./wire.js";

/**
 * The controller's translation between cloak's caller and the inner driver, on encoded
 * messages (wire.ts): each function changes exactly the fields named in its comment and copies
 * every other byte. Pure, so that each rule is tested on bytes.
 *
 * Field numbers are CSI v1.12's (proto/csi.proto); they never change between spec versions.
 */

/** volume_context and parameter keys that are cloak's own; never forwarded to the inner driver. */
export const CLOAK_PREFIX = "cloak.dev/";
export const isCloakKey = (key: string): boolean => key.startsWith(CLOAK_PREFIX);

export interface ByteRange {
  readonly requiredBytes: bigint;
  readonly limitBytes: bigint;
}

type Edit = (field: WireField) => readonly WireField[];

/** A message field set to `payload`: edited where it is, appended where it was absent. */
function setNested(bytes: Buffer, number: number, fn: (payload: Buffer) => Buffer, edits: Record<number, Edit> = {}): Buffer {
  const present = parseFields(bytes).some((f) => f.number === number);
  return edit(bytes, { ...edits, [number]: nested(fn) }, present ? [] : [lenField(number, fn(EMPTY))]);
}

/** The message with each field whose number has an edit replaced by what the edit returns. */
function edit(bytes: Buffer, edits: Readonly<Record<number, Edit>>, append: readonly WireField[] = []): Buffer {
  const out: WireField[] = [];
  for (const field of parseFields(bytes)) {
    const e = edits[field.number];
    out.push(...(e ? e(field) : [field]));
  }
  return joinFields([...out, ...append]);
}

const EMPTY = Buffer.alloc(0);
const nested = (fn: (payload: Buffer) => Buffer): Edit => (f) => [lenField(f.number, fn(f.payload ?? EMPTY))];
const withoutCloakKeys: Edit = (f) => (isCloakKey(mapEntryKey(f)) ? [] : [f]);
const drop: Edit = () => [];

/** A VolumeCapability with its access type (block 1 | mount 2) replaced by block; access_mode and anything else kept. */
export function blockCapability(capability: Buffer): Buffer {
  return joinFields([lenField(1, EMPTY), ...parseFields(edit(capability, { 1: drop, 2: drop }))]);
}

/** A CapacityRange (required 1, limit 2) set to `range`; zero values left out, as proto3 does. */
function capacityRange(original: Buffer, range: ByteRange): Buffer {
  const fields = [
    ...(range.requiredBytes !== 0n ? [varintField(1, range.requiredBytes)] : []),
    ...(range.limitBytes !== 0n ? [varintField(2, range.limitBytes)] : []),
  ];
  return edit(original, { 1: drop, 2: drop }, fields);
}

/** The last value of an int64 field (protobuf's rule for repeated scalars), 0 when absent. */
function lastInt64(fields: readonly WireField[], number: number): bigint {
  const last = fields.findLast((f) => f.number === number);
  return last ? int64Of(last) : 0n;
}

/** An int64 field lowered by `by` (at least 0); an absent or zero value (unknown) stays absent. */
function lowered(bytes: Buffer, number: number, by: bigint): Buffer {
  const value = lastInt64(parseFields(bytes), number);
  const field = value > 0n ? [varintField(number, value > by ? value - by : 0n)] : [];
  return edit(bytes, { [number]: drop }, field);
}

// ---- requests to the inner driver ---------------------------------------------------------

/**
 * CreateVolumeRequest: capacity_range (2) set to `range` when given, every volume_capabilities
 * entry (3) made block, cloak's keys dropped from parameters (4) and mutable_parameters (8).
 */
export function createVolumeRequest(bytes: Buffer, range: ByteRange | undefined): Buffer {
  const edits: Record<number, Edit> = { 3: nested(blockCapability), 4: withoutCloakKeys, 8: withoutCloakKeys };
  return range ? setNested(bytes, 2, (p) => capacityRange(p, range), edits) : edit(bytes, edits);
}

/** ControllerPublishVolumeRequest: volume_capability (3) made block, cloak's keys dropped from volume_context (6). */
export function controllerPublishRequest(bytes: Buffer): Buffer {
  return edit(bytes, { 3: nested(blockCapability), 6: withoutCloakKeys });
}

/** ValidateVolumeCapabilitiesRequest: capabilities (3) made block; cloak's keys dropped from volume_context (2), parameters (4), mutable_parameters (6). */
export function validateRequest(bytes: Buffer): Buffer {
  return edit(bytes, { 2: withoutCloakKeys, 3: nested(blockCapability), 4: withoutCloakKeys, 6: withoutCloakKeys });
}

/** GetCapacityRequest: capabilities (1) made block, cloak's keys dropped from parameters (2). */
export function getCapacityRequest(bytes: Buffer): Buffer {
  return edit(bytes, { 1: nested(blockCapability), 2: withoutCloakKeys });
}

/** ControllerExpandVolumeRequest: capacity_range (2) set to `range`, volume_capability (4) made block. */
export function expandRequest(bytes: Buffer, range: ByteRange): Buffer {
  return setNested(bytes, 2, (p) => capacityRange(p, range), { 4: nested(blockCapability) });
}

/** CreateSnapshotRequest: cloak's keys dropped from parameters (4). */
export function createSnapshotRequest(bytes: Buffer): Buffer {
  return edit(bytes, { 4: withoutCloakKeys });
}

/** ControllerModifyVolumeRequest: cloak's keys dropped from mutable_parameters (3). */
export function modifyVolumeRequest(bytes: Buffer): Buffer {
  return edit(bytes, { 3: withoutCloakKeys });
}

// ---- responses from the inner driver ------------------------------------------------------

/**
 * A Volume: capacity_bytes (1) lowered by `overhead` (the LUKS2 header), cloak's `context`
 * added to volume_context (3) in place of any cloak keys the inner driver returned.
 */
export function volume(bytes: Buffer, overhead: bigint, context: Readonly<Record<string, string>> = {}): Buffer {
  const entries = Object.entries(context).map(([k, v]) => stringMapEntry(3, k, v));
  return edit(lowered(bytes, 1, overhead), { 3: withoutCloakKeys }, entries);
}

/** CreateVolumeResponse: volume (1) as {@link volume}. */
export function createVolumeResponse(bytes: Buffer, overhead: bigint, context: Readonly<Record<string, string>>): Buffer {
  return edit(bytes, { 1: nested((p) => volume(p, overhead, context)) });
}

/** ListVolumesResponse: each entry's (1) volume (1) lowered by `overhead`. */
export function listVolumesResponse(bytes: Buffer, overhead: bigint): Buffer {
  return edit(bytes, { 1: nested((entry) => edit(entry, { 1: nested((p) => volume(p, overhead)) })) });
}

/** ControllerGetVolumeResponse: volume (1) lowered by `overhead`. */
export function controllerGetVolumeResponse(bytes: Buffer, overhead: bigint): Buffer {
  return edit(bytes, { 1: nested((p) => volume(p, overhead)) });
}

/** GetCapacityResponse: available_capacity (1), maximum_volume_size (2) and minimum_volume_size (3, Int64Values) lowered. */
export function getCapacityResponse(bytes: Buffer, overhead: bigint): Buffer {
  const wrapped = nested((p) => lowered(p, 1, overhead));
  return edit(lowered(bytes, 1, overhead), { 2: wrapped, 3: wrapped });
}

/** ControllerExpandVolumeResponse: capacity_bytes (1) lowered, node_expansion_required (2) true. */
export function expandResponse(bytes: Buffer, overhead: bigint): Buffer {
  return edit(lowered(bytes, 1, overhead), { 2: drop }, [varintField(2, 1n)]);
}

/** A Snapshot: size_bytes (1) lowered. */
function snapshot(bytes: Buffer, overhead: bigint): Buffer {
  return lowered(bytes, 1, overhead);
}

/** CreateSnapshotResponse and GetSnapshotResponse: snapshot (1) lowered. */
export function snapshotResponse(bytes: Buffer, overhead: bigint): Buffer {
  return edit(bytes, { 1: nested((p) => snapshot(p, overhead)) });
}

/** ListSnapshotsResponse: each entry's (1) snapshot (1) lowered. */
export function listSnapshotsResponse(bytes: Buffer, overhead: bigint): Buffer {
  return edit(bytes, { 1: nested((entry) => edit(entry, { 1: nested((p) => snapshot(p, overhead)) })) });
}
