import { isAbsolute } from "node:path";
import type { Runner } from "../../lib/exec.js";
import { InvalidArgumentError, NotFoundError } from "../../lib/errors.js";
import type { AsyncHandlers } from "../../lib/grpc-handler.js";
import type { NodeHandlers } from "../../proto/gen/csi/v1/Node.js";
import { parseCapacityRange } from "../controller/capacity.js";
import type { NodeDiskSource } from "../disk/disk-source.js";
import { keyIdFromContext } from "../keys/binding.js";
import { type LuksDevices } from "../luks/luks-device.js";
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

  return {
    async NodeStageVolume(req, { signal, log }) {
      const volumeId = validate.volumeId(req.volume_id);
      const stagingPath = await hostPath(req.staging_target_path, "staging_target_path");
      const access = validate.capability(req.volume_capability);
      const context = volumeContext(req.volume_context);
      await locks.with(volumeId, "NodeStageVolume", () =>
        stageVolume(deps, { volumeId, stagingPath, access, ...context, signal, log }),
      );
      return {};
    },

    async NodeUnstageVolume(req, { signal, log }) {
      const volumeId = validate.volumeId(req.volume_id);
      const stagingPath = await hostPath(req.staging_target_path, "staging_target_path");
      await locks.with(volumeId, "NodeUnstageVolume", () => unstageVolume(deps, { volumeId, stagingPath, signal, log }));
      return {};
    },

    async NodePublishVolume(req, { signal, log }) {
      const volumeId = validate.volumeId(req.volume_id);
      const targetPath = await hostPath(req.target_path, "target_path");
      const access = validate.capability(req.volume_capability);
      const stagingPath = await hostPath(req.staging_target_path, "staging_target_path");
      await locks.with(volumeId, "NodePublishVolume", () =>
        publishVolume(run, { volumeId, stagingPath, targetPath, access, readOnly: req.readonly, signal, log }),
      );
      return {};
    },

    async NodeUnpublishVolume(req, { signal, log }) {
      const volumeId = validate.volumeId(req.volume_id);
      const targetPath = await hostPath(req.target_path, "target_path");
      await locks.with(volumeId, "NodeUnpublishVolume", () => unpublishVolume(run, { targetPath, signal, log }));
      return {};
    },

    async NodeGetVolumeStats(req, { signal }) {
      const volumeId = validate.volumeId(req.volume_id);
      const volumePath = await existingHostPath(req.volume_path, "volume_path", allowedPathRoots);
      return volumeStats(deps, { volumeId, volumePath, signal });
    },

    async NodeExpandVolume(req, { signal, log }) {
      const volumeId = validate.volumeId(req.volume_id);
      const volumePath = await existingHostPath(req.volume_path, "volume_path", allowedPathRoots);
      const { requiredBytes } = parseCapacityRange(req.capacity_range);
      const capacity = await locks.with(volumeId, "NodeExpandVolume", () =>
        expandVolume(deps, { volumeId, volumePath, requiredBytes, signal, log }),
      );
      return { capacity_bytes: capacity };
    },

    async NodeGetCapabilities() {
      const rpcs = ["STAGE_UNSTAGE_VOLUME", "GET_VOLUME_STATS", "EXPAND_VOLUME", "VOLUME_CONDITION"] as const;
      return { capabilities: rpcs.map((type) => ({ rpc: { type } })) };
    },

    async NodeGetInfo() {
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

/** What the controller recorded in volume_context at CreateVolume. */
function volumeContext(context: Record<string, string>): { contextFsType: Filesystem | undefined; integrity: boolean; keyId: string | undefined } {
  const fsType = context["fsType"];
  if (fsType !== undefined && fsType !== "" && !isFilesystem(fsType)) {
    throw new InvalidArgumentError(`volume_context.fsType ${JSON.stringify(fsType)} is not supported; use ext4 or xfs`);
  }
  const integrity = context["integrity"];
  if (integrity !== undefined && integrity !== "true" && integrity !== "false") {
    throw new InvalidArgumentError(`volume_context.integrity must be "true" or "false"`);
  }
  return { contextFsType: fsType === "" ? undefined : fsType, integrity: integrity === "true", keyId: keyIdFromContext(context) };
}
