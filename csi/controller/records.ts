import type { VolumeParameters } from "./parameters.js";

/**
 * The controller's durable state, one record per volume and per snapshot. `state` makes every
 * multi-step operation resumable: a record is written "creating" before its disk exists and
 * "deleting" before its disk is erased, so a restart knows what was in flight.
 */
export interface VolumeRecord {
  readonly id: string;
  /** The CO's name for it: CreateVolume is idempotent by name. */
  readonly name: string;
  readonly state: "creating" | "ready" | "deleting";
  readonly capacityBytes: number;
  readonly diskBytes: number;
  readonly parameters: VolumeParameters;
  /** The node whose disks hold it (local volumes live on one node). */
  readonly nodeId: string;
  readonly source?: { readonly kind: "snapshot" | "volume"; readonly id: string } | undefined;
  /** The LUKS UUID the node formats with, inherited by copies; absent for volumes made before key binding. */
  readonly keyId?: string | undefined;
  readonly createdAt: string;
}

export interface SnapshotRecord {
  readonly id: string;
  readonly name: string;
  readonly state: "creating" | "ready" | "deleting";
  readonly sourceVolumeId: string;
  /** The source volume's capacity at the time: the smallest volume restorable from it. */
  readonly capacityBytes: number;
  readonly diskBytes: number;
  readonly parameters: VolumeParameters;
  /** The source volume's key id: a restore from this snapshot carries it too. */
  readonly keyId?: string | undefined;
  readonly createdAt: string;
}

type Json = Record<string, unknown>;

export function parseVolumeRecord(value: unknown): VolumeRecord {
  const v = object(value, "volume record");
  const source = v["source"] === undefined ? undefined : object(v["source"], "source");
  return {
    id: string(v, "id"),
    name: string(v, "name"),
    state: oneOf(v, "state", ["creating", "ready", "deleting"] as const),
    capacityBytes: count(v, "capacityBytes"),
    diskBytes: count(v, "diskBytes"),
    parameters: parameters(v["parameters"]),
    nodeId: string(v, "nodeId"),
    source: source && { kind: oneOf(source, "kind", ["snapshot", "volume"] as const), id: string(source, "id") },
    keyId: optionalString(v, "keyId"),
    createdAt: string(v, "createdAt"),
  };
}

export function parseSnapshotRecord(value: unknown): SnapshotRecord {
  const v = object(value, "snapshot record");
  return {
    id: string(v, "id"),
    name: string(v, "name"),
    state: oneOf(v, "state", ["creating", "ready", "deleting"] as const),
    sourceVolumeId: string(v, "sourceVolumeId"),
    capacityBytes: count(v, "capacityBytes"),
    diskBytes: count(v, "diskBytes"),
    parameters: parameters(v["parameters"]),
    keyId: optionalString(v, "keyId"),
    createdAt: string(v, "createdAt"),
  };
}

function optionalString(v: Json, key: string): string | undefined {
  return v[key] === undefined ? undefined : string(v, key);
}

function parameters(value: unknown): VolumeParameters {
  const p = object(value, "parameters");
  const fsType = oneOf(p, "fsType", ["ext4", "xfs"] as const);
  if (typeof p["integrity"] !== "boolean") throw new Error("parameters.integrity is not a boolean");
  return { fsType, integrity: p["integrity"] };
}

function object(value: unknown, what: string): Json {
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw new Error(`${what} is not an object`);
  return value as Json;
}

function string(v: Json, key: string): string {
  const value = v[key];
  if (typeof value !== "string" || value === "") throw new Error(`${key} is not a non-empty string`);
  return value;
}

function count(v: Json, key: string): number {
  const value = v[key];
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) throw new Error(`${key} is not a byte count`);
  return value;
}

function oneOf<T extends string>(v: Json, key: string, allowed: readonly T[]): T {
  const value = v[key];
  if (typeof value !== "string" || !(allowed as readonly string[]).includes(value)) {
    throw new Error(`${key} is not one of ${allowed.join(", ")}`);
  }
  return value as T;
}
