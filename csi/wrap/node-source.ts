import { mkdir, rm } from "node:fs/promises";
import { status as GrpcStatus } from "@grpc/grpc-js";
import type { MethodDefinition } from "@grpc/proto-loader";
import type { Runner } from "../../lib/exec.js";
import { FailedPreconditionError, UnavailableError, toGrpcStatus } from "../../lib/errors.js";
import type { Logger } from "../../lib/log.js";
import type { NodeDefinition } from "../../proto/gen/csi/v1/Node.js";
import type { NodeGetInfoResponse } from "../../proto/gen/csi/v1/NodeGetInfoResponse.js";
import { LUKS_HEADER_BYTES } from "../controller/capacity.js";
import type { CallBounds, NodeDiskSource } from "../disk/disk-source.js";
import { failpoint } from "../failpoints.js";
import { readMounts } from "../node/mounts.js";
import * as blockdev from "../tools/blockdev.js";
import { blockDeviceAt, blockDeviceIfAny, checkNoLinkBelow } from "./device.js";
import { wrappedVolumeId } from "./ids.js";
import type { InnerDriver } from "./inner-driver.js";
import { innerPaths, type InnerPaths } from "./layout.js";
import { WRAP_CONTEXT_KEYS } from "./policy.js";
import { respondWith } from "./raw-messages.js";
import { isCloakKey } from "./translate.js";

export interface WrapNodeSourceOptions {
  /** The inner driver's node plugin: its registered socket on this host. */
  readonly inner: InnerDriver;
  readonly definition: NodeDefinition;
  /** Where per-volume directories go (layout.ts). */
  readonly root: string;
  readonly run: Runner;
  readonly log: Logger;
  /** How long NodeExpandVolume waits for the disk to show its new size. */
  readonly growWaitMs?: number;
  /** How long the inner node's capabilities are trusted before being asked again (an upgrade may change them); 60 s. */
  readonly capabilitiesTtlMs?: number | undefined;
}

/**
 * The wrap disk source's node half: a volume's disk is whatever block device the inner driver
 * places at cloak's publish path, after (if it stages) its NodeStageVolume. attach and detach
 * are each a sequence of idempotent steps, every one of which checks what is there first, so a
 * plugin killed between any two of them finishes on retry: kubelet's block mapper's sequence,
 * with cloak in kubelet's place (csi_block.go).
 */
export function createWrapNodeSource(options: WrapNodeSourceOptions): NodeDiskSource {
  const { inner, definition, root, run, log } = options;
  let capabilities: { at: number; rpcs: Set<string> } | undefined;

  async function innerRpcs(bounds: CallBounds): Promise<Set<string>> {
    if (capabilities && Date.now() - capabilities.at < (options.capabilitiesTtlMs ?? 60_000)) return capabilities.rpcs;
    const answer = await inner.call(definition, "NodeGetCapabilities", {}, bounds);
    capabilities = { at: Date.now(), rpcs: new Set(answer.capabilities.map((c) => c.rpc?.type ?? "UNKNOWN")) };
    return capabilities.rpcs;
  }

  /** cloak's directory, created, and checked to be where it should be (no link planted on the way). */
  async function prepare(paths: InnerPaths): Promise<void> {
    await mkdir(paths.staging, { recursive: true, mode: 0o750 });
    await checkNoLinkBelow(root, paths.staging);
  }

  /** Calls that are done when the volume is already gone: NotFound from an unpublish or unstage. */
  async function release(call: () => Promise<unknown>): Promise<void> {
    try {
      await call();
    } catch (err) {
      if (toGrpcStatus(err).code !== GrpcStatus.NOT_FOUND) throw err;
    }
  }

  async function removeDirectory(paths: InnerPaths, volumeId: string): Promise<void> {
    const prefix = `${paths.dir}/`;
    const left = (await readMounts()).filter((m) => m.mountPoint === paths.dir || m.mountPoint.startsWith(prefix));
    if (left.length > 0) {
      throw new FailedPreconditionError(
        `volume ${volumeId}: the inner driver left ${left.map((m) => m.mountPoint).join(", ")} mounted after unpublishing and unstaging; ` +
          `cloak does not remove ${paths.dir} from under a mount`,
      );
    }
    await rm(paths.dir, { recursive: true, force: true });
  }

  return {
    kind: "wrap",
    checkVolumeId: wrappedVolumeId,
    contextKeys: WRAP_CONTEXT_KEYS,
    undoFailedStage: true,

    async attach(request) {
      const { volumeId, access } = request;
      const paths = innerPaths(root, volumeId);
      await prepare(paths);
      const rpcs = await innerRpcs(request);
      const staged = rpcs.has("STAGE_UNSTAGE_VOLUME");
      const capability = { block: {}, access_mode: { mode: access.mode } };
      const volumeContext = Object.fromEntries(Object.entries(request.volumeContext).filter(([k]) => !isCloakKey(k)));
      if (staged) {
        await inner.call(
          definition,
          "NodeStageVolume",
          {
            volume_id: volumeId,
            publish_context: request.publishContext,
            staging_target_path: paths.staging,
            volume_capability: capability,
            secrets: request.secrets,
            volume_context: volumeContext,
          },
          request,
        );
        failpoint("wrap:after-inner-stage", volumeId);
      }
      // kubelet hands node-publish secrets to NodePublish only; cloak calls the inner
      // NodePublish inside its own NodeStage, which has the node-stage secrets.
      await inner.call(
        definition,
        "NodePublishVolume",
        {
          volume_id: volumeId,
          publish_context: request.publishContext,
          staging_target_path: staged ? paths.staging : "",
          target_path: paths.device,
          volume_capability: capability,
          readonly: access.mode === "SINGLE_NODE_READER_ONLY",
          secrets: request.secrets,
          volume_context: volumeContext,
        },
        request,
      );
      failpoint("wrap:after-inner-publish", volumeId);
      const device = await blockDeviceAt(paths.device, root);
      log.info({ volume_id: volumeId, device, publishedAt: paths.device, innerStaged: staged }, "inner driver published the disk");
      return device;
    },

    async findAttached(volumeId) {
      return blockDeviceIfAny(innerPaths(root, volumeId).device, root);
    },

    async detach(request) {
      const { volumeId } = request;
      const paths = innerPaths(root, volumeId);
      const rpcs = await innerRpcs(request);
      await release(() => inner.call(definition, "NodeUnpublishVolume", { volume_id: volumeId, target_path: paths.device }, request));
      failpoint("wrap:after-inner-unpublish", volumeId);
      if (rpcs.has("STAGE_UNSTAGE_VOLUME")) {
        await release(() => inner.call(definition, "NodeUnstageVolume", { volume_id: volumeId, staging_target_path: paths.staging }, request));
        failpoint("wrap:after-inner-unstage", volumeId);
      }
      await removeDirectory(paths, volumeId);
    },

    async refreshSize(request) {
      const { volumeId, requiredBytes } = request;
      const paths = innerPaths(root, volumeId);
      const diskBytes = requiredBytes + LUKS_HEADER_BYTES;
      const rpcs = await innerRpcs(request);
      if (rpcs.has("EXPAND_VOLUME")) {
        // Some drivers make the node see the new size here (Azure Disk rescans the SCSI bus).
        try {
          await inner.call(
            definition,
            "NodeExpandVolume",
            {
              volume_id: volumeId,
              volume_path: paths.device,
              staging_target_path: rpcs.has("STAGE_UNSTAGE_VOLUME") ? paths.staging : "",
              capacity_range: { required_bytes: diskBytes },
              volume_capability: { block: {}, access_mode: { mode: "SINGLE_NODE_WRITER" } },
            },
            request,
          );
        } catch (err) {
          if (toGrpcStatus(err).code !== GrpcStatus.UNIMPLEMENTED) throw err;
        }
      }
      const device = await blockDeviceAt(paths.device, root);
      const until = Math.min(Date.now() + (options.growWaitMs ?? 60_000), (request.deadline ?? Infinity) - 2_000);
      for (;;) {
        const size = blockdev.parseSize((await run(blockdev.sizeInBytes(device), { signal: request.signal })).stdout);
        if (size >= diskBytes) return;
        if (Date.now() >= until) {
          throw new UnavailableError(
            `volume ${volumeId}: its disk ${device} is ${size} bytes, short of the ${diskBytes} the expansion needs ` +
              "(the capacity plus the LUKS2 header); the inner driver has not grown it yet, retry later",
          );
        }
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
    },

    async nodeInfo(bounds) {
      // Verbatim: node id, attach limit and topology are the inner driver's, so that the
      // provisioner's topology and the attacher's node ids mean the same to both drivers.
      const bytes = await inner.callRaw(definition, "NodeGetInfo", Buffer.alloc(0), bounds);
      const def = definition.NodeGetInfo as unknown as MethodDefinition<object, object, object, NodeGetInfoResponse>;
      return respondWith(def.responseDeserialize(bytes), bytes);
    },
  };
}
