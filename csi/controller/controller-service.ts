import { randomUUID } from "node:crypto";
import type { Logger } from "../../lib/log.js";
import {
  AbortedError,
  AlreadyExistsError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  OutOfRangeError,
  ResourceExhaustedError,
  UnavailableError,
} from "../../lib/errors.js";
import type { AsyncHandlers, CallContext } from "../../lib/grpc-handler.js";
import type { ControllerHandlers } from "../../proto/gen/csi/v1/Controller.js";
import type { Snapshot } from "../../proto/gen/csi/v1/Snapshot.js";
import type { Topology__Output } from "../../proto/gen/csi/v1/Topology.js";
import type { Volume } from "../../proto/gen/csi/v1/Volume.js";
import type { VolumeCapability__Output } from "../../proto/gen/csi/v1/VolumeCapability.js";
import type { VolumeContentSource__Output } from "../../proto/gen/csi/v1/VolumeContentSource.js";
import type { ControllerDiskSource, CopyProgress, DiskRef } from "../disk/disk-source.js";
import type { RecordStore } from "../disk/local/record-store.js";
import { failpoint } from "../failpoints.js";
import { keyIdContext, keyIdFor } from "../keys/binding.js";
import { NO_LINEAGE, releaseMember, type KeyLineage } from "../keys/lineage.js";
import type { LuksDevices } from "../luks/luks-device.js";
import { TOPOLOGY_NODE_KEY } from "../node/node-service.js";
import * as validate from "../validate.js";
import type { VolumeLocks } from "../volume-locks.js";
import {
  largestCapacity,
  minimumCapacityBytes,
  parseCapacityRange,
  promisableBytes,
  satisfies,
  sizeFor,
  type CapacityRange,
} from "./capacity.js";
import { CopyJobs, describeProgress, waitBudgetMs, waitFor } from "./copy-jobs.js";
import { page } from "./pagination.js";
import { parseParameters, sameParameters, volumeContext, type VolumeParameters } from "./parameters.js";
import type { SnapshotRecord, VolumeRecord } from "./records.js";

export interface ControllerServiceOptions {
  /** The node whose disk source this controller manages (the local layout: one per node). */
  readonly nodeId: string;
  readonly disks: ControllerDiskSource;
  readonly volumes: RecordStore<VolumeRecord>;
  readonly snapshots: RecordStore<SnapshotRecord>;
  readonly luks: LuksDevices;
  /** Shared with the node service: a volume being staged cannot be deleted at the same time. */
  readonly locks: VolumeLocks;
  readonly log: Logger;
  /** Where each key's volumes and snapshots are recorded (the key service reads it); none by default. */
  readonly lineage?: KeyLineage;
  /** This driver's name, as the lineage records it; csi.cloak.dev by default. */
  readonly driverName?: string;
  /**
   * How many bytes of disks may be promised per byte the disk source can hold (1.0: never more
   * than fits, however sparse the disks are).
   */
  readonly overcommitRatio: number;
  /** Told of every CreateVolume/CreateSnapshot that concerns a record still being created. */
  readonly activity?: { touch(id: string): void } | undefined;
}

/** Every volume id this controller issues starts so (see ControllerExpandVolume). */
const VOLUME_ID_PREFIX = "vol-";

/** CSI names are up to 128 characters in Kubernetes; control characters are banned by the spec. */
const MAX_NAME = 128;

const CAPABILITIES = [
  "CREATE_DELETE_VOLUME",
  "LIST_VOLUMES",
  "GET_CAPACITY",
  "CREATE_DELETE_SNAPSHOT",
  "LIST_SNAPSHOTS",
  "CLONE_VOLUME",
  "EXPAND_VOLUME",
  "GET_VOLUME",
] as const;

/**
 * The CSI Controller service over a disk source. Every multi-step operation writes its intent
 * to the record store first, so a restart finishes or rolls forward whatever was in flight,
 * and every call is idempotent by name (create) or id (delete, expand).
 */
export function createControllerService(options: ControllerServiceOptions): AsyncHandlers<ControllerHandlers> {
  const { disks, volumes, snapshots, locks, log, nodeId } = options;
  const copies = new CopyJobs();
  const topology = [{ segments: { [TOPOLOGY_NODE_KEY]: nodeId } }];
  const lineage = options.lineage ?? NO_LINEAGE;
  const driver = options.driverName ?? "csi.cloak.dev";
  // Local disks live on this node, and so does every copy of them: the lineage says so.
  const bindKey = (keyId: string | undefined, member: { kind: "volume" | "snapshot"; id: string }, signal: AbortSignal) =>
    keyId === undefined ? Promise.resolve() : lineage.bind({ keyId, driver, node: nodeId, member, signal });
  const releaseKey = (keyId: string | undefined, member: { kind: "volume" | "snapshot"; id: string }, signal: AbortSignal) =>
    releaseMember(lineage, { keyId, driver, member, signal });

  function toVolume(record: VolumeRecord): Volume {
    return {
      volume_id: record.id,
      capacity_bytes: record.capacityBytes,
      volume_context: { ...volumeContext(record.parameters), ...keyIdContext(record.keyId) },
      accessible_topology: topology,
      content_source: record.source
        ? record.source.kind === "snapshot"
          ? { snapshot: { snapshot_id: record.source.id } }
          : { volume: { volume_id: record.source.id } }
        : null,
    };
  }

  function toSnapshot(record: SnapshotRecord): Snapshot {
    const millis = Date.parse(record.createdAt);
    return {
      snapshot_id: record.id,
      source_volume_id: record.sourceVolumeId,
      size_bytes: record.capacityBytes,
      creation_time: { seconds: Math.floor(millis / 1000), nanos: (millis % 1000) * 1_000_000 },
      ready_to_use: record.state === "ready",
    };
  }

  function readyVolume(id: string): VolumeRecord {
    const record = volumes.get(id);
    if (!record || record.state !== "ready") throw new NotFoundError(`volume ${id} does not exist`);
    return record;
  }

  /** The source a request names, as a checked reference; nothing is looked up yet. */
  function requestedSource(source: VolumeContentSource__Output | null): DiskRef | undefined {
    if (!source) return undefined;
    if (source.type === "snapshot") {
      return { kind: "snapshot", id: validate.volumeId(source.snapshot?.snapshot_id ?? "", "volume_content_source.snapshot.snapshot_id") };
    }
    if (source.type === "volume") {
      return { kind: "volume", id: validate.volumeId(source.volume?.volume_id ?? "", "volume_content_source.volume.volume_id") };
    }
    throw new InvalidArgumentError("volume_content_source names neither a snapshot nor a volume");
  }

  /** The source a new volume is copied from, checked against what the request asks. */
  function contentSource(
    ref: DiskRef,
    parameters: VolumeParameters,
  ): { kind: DiskRef["kind"]; id: string; capacityBytes: number; diskBytes: number; keyId: string | undefined } {
    const found = ref.kind === "snapshot" ? snapshots.get(ref.id) : volumes.get(ref.id);
    if (!found || found.state !== "ready") {
      throw new NotFoundError(ref.kind === "snapshot" ? `snapshot ${ref.id} does not exist` : `source volume ${ref.id} does not exist`);
    }
    if (found.parameters.integrity !== parameters.integrity) {
      throw new InvalidArgumentError(`the ${ref.kind} ${ref.id} was made ${found.parameters.integrity ? "with" : "without"} integrity; the new volume must match`);
    }
    return { ...ref, capacityBytes: found.capacityBytes, diskBytes: found.diskBytes, keyId: found.keyId };
  }

  /**
   * The copies reading `disk` that have not finished: volumes being created from it, and (for
   * a volume) snapshots being taken of it. Recorded state, so it holds across restarts too.
   */
  function copiesReading(disk: DiskRef): string[] {
    const clones = volumes
      .list()
      .filter((v) => v.state === "creating" && v.source?.kind === disk.kind && v.source.id === disk.id)
      .map((v) => `volume ${v.id}`);
    const snaps = disk.kind === "volume" ? snapshots.list().filter((s) => s.state === "creating" && s.sourceVolumeId === disk.id).map((s) => `snapshot ${s.id}`) : [];
    return [...clones, ...snaps];
  }

  function refuseWhileCopied(disk: DiskRef): void {
    const readers = copiesReading(disk);
    if (readers.length > 0) {
      throw new FailedPreconditionError(
        `the ${disk.kind} ${disk.id} is being copied into ${readers.join(", ")}; it can be deleted once the copy has finished`,
      );
    }
  }

  function checkTopology(requirement: { requisite: Topology__Output[]; preferred: Topology__Output[] } | null): void {
    if (!requirement) return;
    const all = [...requirement.requisite, ...requirement.preferred];
    if (all.length === 0) return;
    const here = all.some((t) => t.segments[TOPOLOGY_NODE_KEY] === undefined || t.segments[TOPOLOGY_NODE_KEY] === nodeId);
    if (!here) throw new ResourceExhaustedError(`this controller provisions only on node ${nodeId}, which the topology requirement excludes`);
  }

  /** Bytes of disk every record holds (or will hold): sparse or not, each counts in full. */
  function provisionedDiskBytes(): number {
    return [...volumes.list(), ...snapshots.list()].reduce((sum, r) => sum + r.diskBytes, 0);
  }

  /**
   * Capacity accounting: `commit` (which writes the record that claims `extraDiskBytes`) runs
   * only when the claim fits what may still be promised. One claim at a time, so that two
   * concurrent creates cannot both take the last bytes.
   */
  let claims: Promise<unknown> = Promise.resolve();
  function claim<T>(extraDiskBytes: number, commit: () => Promise<T>): Promise<T> {
    const next = claims.then(async () => {
      const limit = Math.floor((await disks.poolBytes()) * options.overcommitRatio);
      if (extraDiskBytes > limit) {
        throw new OutOfRangeError(
          `${extraDiskBytes} bytes of disk are more than node ${nodeId} can ever provide (${limit} bytes at overcommit ratio ${options.overcommitRatio})`,
        );
      }
      const left = promisableBytes(limit, 1, provisionedDiskBytes());
      if (extraDiskBytes > left) {
        throw new ResourceExhaustedError(
          `node ${nodeId} has ${left} bytes of disk left to promise (overcommit ratio ${options.overcommitRatio}); ${extraDiskBytes} are needed`,
        );
      }
      return commit();
    });
    claims = next.catch(() => undefined);
    return next;
  }

  /**
   * Finishes a copy-made volume or snapshot: the copy runs in the background (CopyJobs) holding
   * the source's lock, so the source cannot be staged or deleted under it; this call waits for
   * it as long as its deadline allows and answers Aborted while it runs.
   */
  async function awaitCopy(
    what: string,
    key: string,
    start: (onProgress: (progress: CopyProgress) => void) => Promise<void>,
    call: CallContext["call"],
  ): Promise<void> {
    const job = copies.ensure(key, start);
    if (!(await waitFor(job, waitBudgetMs(call.getDeadline())))) {
      throw new AbortedError(`${what} is being copied: ${describeProgress(job.progress)}; retry later`);
    }
  }

  async function copyVolume(record: VolumeRecord, source: DiskRef, onProgress: (progress: CopyProgress) => void): Promise<void> {
    const target: DiskRef = { kind: "volume", id: record.id };
    await locks.with(source.id, `copy into ${record.id}`, () =>
      locks.with(record.id, "copy", async () => {
        await disks.copy(source, target, record.diskBytes, { onProgress });
        const sourceDisk = source.kind === "snapshot" ? snapshots.get(source.id)?.diskBytes : volumes.get(source.id)?.diskBytes;
        const path = disks.localPath(target);
        // A copy larger than its source holds a filesystem sized for the source: the node grows
        // it at the next stage when the header says so. Only a copy of a volume that was in use
        // has a filesystem to grow.
        if (path && sourceDisk !== undefined && record.diskBytes > sourceDisk && (await options.luks.label(path, undefined)) === "in-use") {
          await options.luks.setLabel(path, "grow", undefined);
        }
      }),
    );
  }

  return {
    async CreateVolume(req, { call, signal }) {
      const name = checkName(req.name);
      if (req.volume_capabilities.length === 0) throw new InvalidArgumentError("volume_capabilities is required");
      const accesses = req.volume_capabilities.map((cap, i) => validate.capability(cap, `volume_capabilities[${i}]`));
      const parameters = parseParameters(req.parameters);
      let range: CapacityRange = parseCapacityRange(req.capacity_range);
      const sourceRef = requestedSource(req.volume_content_source);
      checkTopology(req.accessibility_requirements);

      return locks.with(`name:${name}`, "CreateVolume", async () => {
        let record = volumes.find((v) => v.name === name);
        if (record) {
          // The name decides first (the spec's error table): an existing volume that differs
          // is AlreadyExists, whatever else is wrong with the request.
          const sameSource = (record.source?.id ?? "") === (sourceRef?.id ?? "") && record.source?.kind === sourceRef?.kind;
          if (!sameParameters(record.parameters, parameters) || !sameSource || !satisfies(record.capacityBytes, range)) {
            throw new AlreadyExistsError(
              `volume ${name} already exists (${record.id}, ${record.capacityBytes} bytes, ${JSON.stringify(record.parameters)}) and differs from this request`,
            );
          }
          if (record.state === "ready") return { volume: toVolume(record) };
          if (record.state === "deleting") throw new AbortedError(`volume ${name} is being deleted; retry later`);
        } else {
          const source = sourceRef && contentSource(sourceRef, parameters);
          if (source && range.requiredBytes === 0 && range.limitBytes === 0) range = { requiredBytes: source.capacityBytes, limitBytes: 0 };
          const sizing = sizeFor(range, { integrity: parameters.integrity, minimumBytes: minimumCapacityBytes(accesses, parameters.fsType) });
          if (source && sizing.capacityBytes < source.capacityBytes) {
            throw new OutOfRangeError(`the ${source.kind} ${source.id} holds ${source.capacityBytes} bytes; a copy cannot be smaller`);
          }
          const fresh: VolumeRecord = {
            id: `${VOLUME_ID_PREFIX}${randomUUID()}`,
            name,
            state: "creating",
            capacityBytes: sizing.capacityBytes,
            // A copy's disk is never smaller than its source's, header and all.
            diskBytes: Math.max(sizing.diskBytes, source?.diskBytes ?? 0),
            parameters,
            nodeId,
            source: source && { kind: source.kind, id: source.id },
            // A copy carries its source's LUKS header, hence its key.
            keyId: keyIdFor(source),
            createdAt: new Date().toISOString(),
          };
          await claim(fresh.diskBytes, () => volumes.put(fresh));
          record = fresh;
          failpoint("create:after-record", name);
        }
        const creating = record;
        // Recorded before the disk exists, so no disk ever carries a key its lineage does not list.
        await bindKey(creating.keyId, { kind: "volume", id: creating.id }, signal);
        options.activity?.touch(creating.id);
        const source = creating.source;
        if (source) {
          await awaitCopy(`volume ${creating.id}`, `volume:${creating.id}`, (onProgress) => copyVolume(creating, source, onProgress), call);
        } else {
          await locks.with(creating.id, "CreateVolume", () => disks.createEmpty(creating.id, creating.diskBytes));
        }
        failpoint("create:after-disk", name);
        const ready: VolumeRecord = { ...creating, state: "ready" };
        await volumes.put(ready);
        log.info({ volume_id: ready.id, name, capacityBytes: ready.capacityBytes, source: ready.source }, "volume created");
        return { volume: toVolume(ready) };
      });
    },

    async DeleteVolume(req, { signal }) {
      const id = requiredId(req.volume_id, "volume_id");
      await locks.with(id, "DeleteVolume", async () => {
        const record = volumes.get(id);
        if (!record) return;
        refuseWhileCopied({ kind: "volume", id });
        if (await disks.isAttached(id)) {
          throw new FailedPreconditionError(`volume ${id} is staged on node ${record.nodeId}; unstage it first`);
        }
        if (record.state !== "deleting") await volumes.put({ ...record, state: "deleting" });
        failpoint("delete:after-mark", id);
        await disks.destroy({ kind: "volume", id }, { signal });
        // After the disk is gone, before the record: a retry after a crash still knows the key.
        await releaseKey(record.keyId, { kind: "volume", id }, signal);
        await volumes.remove(id);
        log.info({ volume_id: id, name: record.name }, "volume deleted");
      });
      return {};
    },

    async ControllerExpandVolume(req) {
      const id = requiredId(req.volume_id, "volume_id");
      if (!req.capacity_range) throw new InvalidArgumentError("capacity_range is required");
      const range = parseCapacityRange(req.capacity_range);
      return locks.with(id, "ControllerExpandVolume", async () => {
        if (!volumes.get(id) && id.startsWith(VOLUME_ID_PREFIX)) {
          // external-resizer has no node-deployment mode: every node's resizer asks every
          // node's plugin. NotFound would make it mark the claim infeasible, racing the owner's
          // success; Unavailable makes the other nodes retry until the owner has resized.
          throw new UnavailableError(`volume ${id} is not on node ${nodeId}; the plugin on the node that holds it expands it`);
        }
        const record = readyVolume(id);
        if (record.parameters.integrity) {
          throw new FailedPreconditionError(
            `volume ${id} uses dm-integrity, which cannot be expanded: its tags and journal are laid out for the original size`,
          );
        }
        const sizing = sizeFor(range, { integrity: false, minimumBytes: 0 });
        if (sizing.capacityBytes <= record.capacityBytes) {
          return { capacity_bytes: record.capacityBytes, node_expansion_required: true };
        }
        const diskBytes = Math.max(sizing.diskBytes, record.diskBytes);
        const grown: VolumeRecord = { ...record, capacityBytes: sizing.capacityBytes, diskBytes };
        await claim(diskBytes - record.diskBytes, async () => {
          await disks.grow(id, diskBytes);
          failpoint("expand:after-grow", id);
          await volumes.put(grown);
        });
        log.info({ volume_id: id, capacityBytes: sizing.capacityBytes }, "volume expanded");
        return { capacity_bytes: sizing.capacityBytes, node_expansion_required: true };
      });
    },

    async ValidateVolumeCapabilities(req) {
      const id = requiredId(req.volume_id, "volume_id");
      if (req.volume_capabilities.length === 0) throw new InvalidArgumentError("volume_capabilities is required");
      const record = readyVolume(id);
      const unsupported = firstUnsupported(req.volume_capabilities);
      if (unsupported) return { message: unsupported };
      const context: Record<string, string> = { ...volumeContext(record.parameters), ...keyIdContext(record.keyId) };
      for (const [key, value] of Object.entries(req.volume_context)) {
        if (context[key] !== value) return { message: `volume_context.${key} does not match the volume's` };
      }
      try {
        if (!sameParameters(parseParameters(req.parameters), record.parameters) && Object.keys(req.parameters).length > 0) {
          return { message: "parameters do not match the volume's" };
        }
      } catch (err) {
        return { message: err instanceof Error ? err.message : String(err) };
      }
      return { confirmed: { volume_context: req.volume_context, volume_capabilities: req.volume_capabilities, parameters: req.parameters } };
    },

    async ListVolumes(req) {
      const ready = volumes.list().filter((v) => v.state === "ready");
      const { entries, nextToken } = page(ready, (v) => v.id, { maxEntries: req.max_entries, startingToken: req.starting_token });
      return { entries: entries.map((v) => ({ volume: toVolume(v) })), next_token: nextToken };
    },

    async ControllerGetVolume(req) {
      const record = readyVolume(requiredId(req.volume_id, "volume_id"));
      const attached = await disks.isAttached(record.id);
      return { volume: toVolume(record), status: { published_node_ids: attached ? [record.nodeId] : [] } };
    },

    async GetCapacity(req) {
      if (req.accessible_topology && req.accessible_topology.segments[TOPOLOGY_NODE_KEY] !== undefined &&
          req.accessible_topology.segments[TOPOLOGY_NODE_KEY] !== nodeId) {
        return { available_capacity: 0 };
      }
      const parameters = parseParameters(req.parameters);
      const unsupported = firstUnsupported(req.volume_capabilities);
      if (unsupported) throw new InvalidArgumentError(unsupported);
      const accesses = req.volume_capabilities.map((cap) => validate.capability(cap));
      // Without capabilities, the volume is assumed to be a filesystem of the class's type.
      const minimumBytes = minimumCapacityBytes(
        accesses.length > 0 ? accesses : [{ kind: "mount", fsType: parameters.fsType, mountFlags: [], mode: "SINGLE_NODE_WRITER" }],
        parameters.fsType,
      );
      // What may still be promised, not what is free: sparse disks take little until written.
      const promisable = promisableBytes(await disks.poolBytes(), options.overcommitRatio, provisionedDiskBytes());
      const largest = largestCapacity(promisable, { integrity: parameters.integrity, minimumBytes });
      return { available_capacity: largest, maximum_volume_size: { value: largest } };
    },

    async ControllerGetCapabilities() {
      return { capabilities: CAPABILITIES.map((type) => ({ rpc: { type } })) };
    },

    async CreateSnapshot(req, { call, signal }) {
      const name = checkName(req.name);
      const sourceId = requiredId(req.source_volume_id, "source_volume_id");
      const unknown = Object.keys(req.parameters).filter((k) => !k.startsWith("csi.storage.k8s.io/"));
      if (unknown.length > 0) throw new InvalidArgumentError(`unknown snapshot parameters ${unknown.join(", ")}; none are accepted`);

      return locks.with(`snapshot-name:${name}`, "CreateSnapshot", async () => {
        let record = snapshots.find((s) => s.name === name);
        if (record) {
          if (record.sourceVolumeId !== sourceId) {
            throw new AlreadyExistsError(`snapshot ${name} already exists for volume ${record.sourceVolumeId}, not ${sourceId}`);
          }
          if (record.state === "ready") return { snapshot: toSnapshot(record) };
          if (record.state === "deleting") throw new AbortedError(`snapshot ${name} is being deleted; retry later`);
        } else {
          const source = readyVolume(sourceId);
          const fresh: SnapshotRecord = {
            id: `snap-${randomUUID()}`,
            name,
            state: "creating",
            sourceVolumeId: sourceId,
            capacityBytes: source.capacityBytes,
            diskBytes: source.diskBytes,
            parameters: source.parameters,
            keyId: source.keyId,
            createdAt: new Date().toISOString(),
          };
          await claim(fresh.diskBytes, () => snapshots.put(fresh));
          record = fresh;
          failpoint("snapshot:after-record", name);
        }
        const creating = record;
        await bindKey(creating.keyId, { kind: "snapshot", id: creating.id }, signal);
        options.activity?.touch(creating.id);
        // The source's lock keeps a stage or delete of it from interleaving with the copy.
        await awaitCopy(`snapshot ${creating.id}`, `snapshot:${creating.id}`, (onProgress) =>
          locks.with(sourceId, `snapshot ${creating.id}`, () =>
            disks.copy({ kind: "volume", id: sourceId }, { kind: "snapshot", id: creating.id }, creating.diskBytes, { onProgress }),
          ), call);
        const ready: SnapshotRecord = { ...creating, state: "ready" };
        await snapshots.put(ready);
        log.info({ snapshot_id: ready.id, source_volume_id: sourceId, name }, "snapshot created");
        return { snapshot: toSnapshot(ready) };
      });
    },

    async DeleteSnapshot(req, { signal }) {
      const id = requiredId(req.snapshot_id, "snapshot_id");
      await locks.with(id, "DeleteSnapshot", async () => {
        const record = snapshots.get(id);
        if (!record) return;
        refuseWhileCopied({ kind: "snapshot", id });
        if (record.state !== "deleting") await snapshots.put({ ...record, state: "deleting" });
        await disks.destroy({ kind: "snapshot", id }, { signal });
        await releaseKey(record.keyId, { kind: "snapshot", id }, signal);
        await snapshots.remove(id);
        log.info({ snapshot_id: id, name: record.name }, "snapshot deleted");
      });
      return {};
    },

    async ListSnapshots(req) {
      const ready = snapshots
        .list()
        .filter((s) => s.state === "ready")
        .filter((s) => req.snapshot_id === "" || s.id === req.snapshot_id)
        .filter((s) => req.source_volume_id === "" || s.sourceVolumeId === req.source_volume_id);
      const { entries, nextToken } = page(ready, (s) => s.id, { maxEntries: req.max_entries, startingToken: req.starting_token });
      return { entries: entries.map((s) => ({ snapshot: toSnapshot(s) })), next_token: nextToken };
    },
  };
}

function checkName(name: string): string {
  if (name === "") throw new InvalidArgumentError("name is required");
  if (name.length > MAX_NAME) throw new InvalidArgumentError(`name is longer than ${MAX_NAME} characters`);
  if ([...name].some(isBannedControlCharacter)) {
    throw new InvalidArgumentError("name contains control characters, which CSI forbids");
  }
  return name;
}

/**
 * An id given to a delete or lookup: required, but an id cloak could never have issued is not
 * an error for an idempotent delete, only "not found". Ids that could escape the volumes
 * directory are still refused.
 */
function requiredId(id: string, field: string): string {
  if (id === "") throw new InvalidArgumentError(`${field} is required`);
  return validate.volumeId(id, field);
}

function firstUnsupported(capabilities: readonly VolumeCapability__Output[]): string | undefined {
  for (const [i, cap] of capabilities.entries()) {
    try {
      validate.capability(cap, `volume_capabilities[${i}]`);
    } catch (err) {
      return err instanceof Error ? err.message : String(err);
    }
  }
  return undefined;
}

/** U+0000-U+0008, U+000B, U+000C, U+000E-U+001F, U+007F-U+009F: the spec's banned characters. */
function isBannedControlCharacter(char: string): boolean {
  const code = char.codePointAt(0) ?? 0;
  return code <= 0x08 || code === 0x0b || code === 0x0c || (code >= 0x0e && code <= 0x1f) || (code >= 0x7f && code <= 0x9f);
}
