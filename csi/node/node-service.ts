import { isAbsolute } from "node:path";
import { status as GrpcStatus } from "@grpc/grpc-js";
import type { Runner } from "../../lib/exec.js";
import { InvalidArgumentError, NotFoundError, toGrpcStatus } from "../../lib/errors.js";
import type { AsyncHandlers } from "../../lib/grpc-handler.js";
import { callDeadline } from "../../lib/deadline.js";
import type { Logger } from "../../lib/log.js";
import type { NodeHandlers } from "../../proto/gen/csi/v1/Node.js";
import { parseCapacityRange } from "../controller/capacity.js";
import type { ContextKeys, NodeDiskSource } from "../disk/disk-source.js";
import { keyIdFromContext } from "../keys/binding.js";
import { type LuksDevices, mapperName, mappingStatus } from "../luks/luks-device.js";
import { isFilesystem, type Filesystem } from "../tools/mkfs.js";
import * as validate from "../validate.js";
import { type VolumeLocks } from "../volume-locks.js";
import { expandVolume } from "./expand.js";
import { publishVolume, unpublishVolume } from "./publish.js";
import { stageVolume, unstageVolume } from "./stage.js";
import { volumeStats } from "./stats.js";

/** The topology key of local volumes: a volume lives on the node whose disk holds it. */
export const TOPOLOGY_NODE_KEY = "topology.csi.cloak.dev/node";

export interface NodeServiceOptions {
  readonly nodeId: string;
  /** 0 means no limit, as CSI defines it. */
  readonly maxVolumesPerNode: number;
  /** Directories staging and target paths must be under (kubelet's, by default). */
  readonly allowedPathRoots: readonly string[];
  readonly run: Runner;
  readonly luks: LuksDevices;
  readonly disks: NodeDiskSource;
  /** Shared with the controller service when both run in one process. */
  readonly locks: VolumeLocks;
}

/**
 * The CSI Node service. Each handler validates its request, takes the volume's lock (Aborted
 * if another call holds it), and runs effects that are safe to repeat.
 */
export function createNodeService(options: NodeServiceOptions): AsyncHandlers<NodeHandlers> {
  const { run, luks, disks, locks, allowedPathRoots } = options;
  const deps = { run, luks, disks };
  const hostPath = (value: string, field: string): Promise<string> => validate.resolvedHostPath(value, field, allowedPathRoots);
  const checkVolumeId = (value: string): string => (disks.checkVolumeId ? disks.checkVolumeId(value) : validate.volumeId(value));
  const contextKeys = disks.contextKeys ?? LOCAL_CONTEXT_KEYS;

  return {
    async NodeStageVolume(req, { signal, log, call }) {
      const volumeId = checkVolumeId(req.volume_id);
      const stagingPath = await hostPath(req.staging_target_path, "staging_target_path");
      const access = validate.capability(req.volume_capability);
      const context = volumeContext(req.volume_context, contextKeys);
      const deadline = callDeadline(call);
      const disk = {
        volumeId,
        stagingPath,
        access,
        volumeContext: withoutKeys(req.volume_context, contextKeys),
        publishContext: req.publish_context,
        secrets: req.secrets,
        signal,
        deadline,
      };
      await locks.with(volumeId, "NodeStageVolume", async () => {
        const wasOpen = disks.undoFailedStage ? (await mappingStatus(mapperName(volumeId))).active : true;
        try {
          await stageVolume(deps, { volumeId, stagingPath, access, ...context, disk, signal, log });
        } catch (err) {
          // Only what this attempt set up is undone: a mapping that was already open belongs to
          // an earlier stage that succeeded (or is still to be finished by a retry).
          if (!wasOpen && isFinal(err)) await undoStage(deps, { volumeId, stagingPath, signal, deadline, log });
          throw err;
        }
      });
      return {};
    },

    async NodeUnstageVolume(req, { signal, log, call }) {
      const volumeId = checkVolumeId(req.volume_id);
      const stagingPath = await hostPath(req.staging_target_path, "staging_target_path");
      const deadline = callDeadline(call);
      await locks.with(volumeId, "NodeUnstageVolume", () => unstageVolume(deps, { volumeId, stagingPath, signal, deadline, log }));
      return {};
    },

    async NodePublishVolume(req, { signal, log }) {
      const volumeId = checkVolumeId(req.volume_id);
      const targetPath = await hostPath(req.target_path, "target_path");
      const access = validate.capability(req.volume_capability);
      const stagingPath = await hostPath(req.staging_target_path, "staging_target_path");
      await locks.with(volumeId, "NodePublishVolume", () =>
        publishVolume(run, { volumeId, stagingPath, targetPath, access, readOnly: req.readonly, signal, log }),
      );
      return {};
    },

    async NodeUnpublishVolume(req, { signal, log }) {
      const volumeId = checkVolumeId(req.volume_id);
      const targetPath = await hostPath(req.target_path, "target_path");
      await locks.with(volumeId, "NodeUnpublishVolume", () => unpublishVolume(run, { targetPath, signal, log }));
      return {};
    },

    async NodeGetVolumeStats(req, { signal }) {
      const volumeId = checkVolumeId(req.volume_id);
      const volumePath = await existingHostPath(req.volume_path, "volume_path", allowedPathRoots);
      return volumeStats(deps, { volumeId, volumePath, signal });
    },

    async NodeExpandVolume(req, { signal, log, call }) {
      const volumeId = checkVolumeId(req.volume_id);
      const volumePath = await existingHostPath(req.volume_path, "volume_path", allowedPathRoots);
      const { requiredBytes } = parseCapacityRange(req.capacity_range);
      const deadline = callDeadline(call);
      const capacity = await locks.with(volumeId, "NodeExpandVolume", () =>
        expandVolume(deps, { volumeId, volumePath, requiredBytes, signal, deadline, log }),
      );
      return { capacity_bytes: capacity };
    },

    async NodeGetCapabilities() {
      const rpcs = ["STAGE_UNSTAGE_VOLUME", "GET_VOLUME_STATS", "EXPAND_VOLUME", "VOLUME_CONDITION"] as const;
      return { capabilities: rpcs.map((type) => ({ rpc: { type } })) };
    },

    async NodeGetInfo(_req, { signal, call }) {
      if (disks.nodeInfo) return disks.nodeInfo({ signal, deadline: callDeadline(call) });
      return {
        node_id: options.nodeId,
        max_volumes_per_node: options.maxVolumesPerNode,
        accessible_topology: { segments: { [TOPOLOGY_NODE_KEY]: options.nodeId } },
      };
    },
  };
}

/**
 * For stats and expansion a path that cannot exist (relative) is NotFound, not
 * InvalidArgument: the CO asks about a volume at a path, and the answer is that it is not
 * there. Paths outside the allowed roots are still refused.
 */
function existingHostPath(value: string, field: string, roots: readonly string[]): Promise<string> {
  if (value === "") throw new InvalidArgumentError(`${field} is required`);
  if (!isAbsolute(value)) throw new NotFoundError(`${field} ${JSON.stringify(value)} does not exist`);
  return validate.resolvedHostPath(value, field, roots);
}

const LOCAL_CONTEXT_KEYS: ContextKeys = { fsType: "fsType", integrity: "integrity" };

/** What the controller recorded in volume_context at CreateVolume. */
function volumeContext(
  context: Record<string, string>,
  keys: ContextKeys,
): { contextFsType: Filesystem | undefined; integrity: boolean; keyId: string | undefined } {
  const fsType = context[keys.fsType];
  if (fsType !== undefined && fsType !== "" && !isFilesystem(fsType)) {
    throw new InvalidArgumentError(`volume_context.${keys.fsType} ${JSON.stringify(fsType)} is not supported; use ext4 or xfs`);
  }
  const integrity = context[keys.integrity];
  if (integrity !== undefined && integrity !== "true" && integrity !== "false") {
    throw new InvalidArgumentError(`volume_context.${keys.integrity} must be "true" or "false"`);
  }
  return { contextFsType: fsType === "" ? undefined : fsType, integrity: integrity === "true", keyId: keyIdFromContext(context) };
}

function withoutKeys(context: Record<string, string>, keys: ContextKeys): Record<string, string> {
  const drop = new Set(Object.values(keys));
  return Object.fromEntries(Object.entries(context).filter(([key]) => !drop.has(key)));
}

/**
 * kubelet's rule (csi_client.go isFinalError): these codes mean the operation may still be
 * in progress, so kubelet keeps the stage "uncertain" and will unstage it itself later.
 */
const NOT_FINAL: readonly number[] = [
  GrpcStatus.CANCELLED,
  GrpcStatus.DEADLINE_EXCEEDED,
  GrpcStatus.UNAVAILABLE,
  GrpcStatus.RESOURCE_EXHAUSTED,
  GrpcStatus.ABORTED,
];

function isFinal(err: unknown): boolean {
  return !NOT_FINAL.includes(toGrpcStatus(err).code);
}

/** Undoes a failed stage; the stage's own error is what the caller gets, whatever happens here. */
async function undoStage(
  deps: Parameters<typeof unstageVolume>[0],
  request: { volumeId: string; stagingPath: string; signal: AbortSignal; deadline: number | undefined; log: Logger },
): Promise<void> {
  try {
    await unstageVolume(deps, request);
    request.log.info("undid the failed stage: the disk is released");
  } catch (err) {
    request.log.warn({ err: err instanceof Error ? err.message : String(err) }, "could not undo the failed stage");
  }
}
