import { status as GrpcStatus } from "@grpc/grpc-js";
import type { MethodDefinition } from "@grpc/proto-loader";
import { callDeadline } from "../../lib/deadline.js";
import { FailedPreconditionError, InternalError, InvalidArgumentError, toGrpcStatus } from "../../lib/errors.js";
import type { AsyncHandlers, CallContext } from "../../lib/grpc-handler.js";
import type { Logger } from "../../lib/log.js";
import { int64ToNumber } from "../../lib/proto.js";
import type { ControllerDefinition, ControllerHandlers } from "../../proto/gen/csi/v1/Controller.js";
import type { ControllerServiceCapability__Output } from "../../proto/gen/csi/v1/ControllerServiceCapability.js";
import type { VolumeCapability__Output } from "../../proto/gen/csi/v1/VolumeCapability.js";
import type { VolumeContentSource__Output } from "../../proto/gen/csi/v1/VolumeContentSource.js";
import type { LineageMember } from "../../lib/key-lineage.js";
import { LUKS_HEADER_BYTES, minimumCapacityBytes, parseCapacityRange, sizeFor } from "../controller/capacity.js";
import type { CallBounds } from "../disk/disk-source.js";
import { DEFAULT_FILESYSTEM } from "../node/stage-plan.js";
import { KEY_ID_CONTEXT_KEY, keyIdContext } from "../keys/binding.js";
import type { InnerDriver } from "./inner-driver.js";
import type { WrapKeyBinding } from "./key-binding.js";
import { checkCapability, wrapContext, wrapParameters } from "./policy.js";
import { bytesOf, respondWith } from "./raw-messages.js";
import * as translate from "./translate.js";

export interface WrapControllerOptions {
  /** The inner driver's controller (a private, controller-only copy of it, in cloak's pod). */
  readonly inner: InnerDriver;
  /** csi.v1.Controller as proto-loader loads it: for decoding what is sent back. */
  readonly definition: ControllerDefinition;
  /** Where each volume's and snapshot's key id is recorded (./key-binding.ts). */
  readonly keys: WrapKeyBinding;
  readonly log: Logger;
}

const HEADER = BigInt(LUKS_HEADER_BYTES);

/** What cloak can honour of what an inner controller advertises. */
const HONOURED: readonly string[] = [
  "CREATE_DELETE_VOLUME",
  "PUBLISH_UNPUBLISH_VOLUME",
  "LIST_VOLUMES",
  "GET_CAPACITY",
  "CREATE_DELETE_SNAPSHOT",
  "LIST_SNAPSHOTS",
  "CLONE_VOLUME",
  "PUBLISH_READONLY",
  "EXPAND_VOLUME",
  "LIST_VOLUMES_PUBLISHED_NODES",
  "VOLUME_CONDITION",
  "GET_VOLUME",
  "MODIFY_VOLUME",
  "GET_SNAPSHOT",
  // Not SINGLE_NODE_MULTI_WRITER: cloak serves the two classic single-node modes only.
];

/**
 * The Controller service in front of a wrapped driver: translation, not reinvention. Volume
 * and snapshot ids are the inner driver's, unchanged; requests go to it as their bytes with
 * only these changes (translate.ts): every capability becomes Block with the same access mode,
 * sizes grow by the LUKS2 header on the way in and shrink by it on the way out, cloak's
 * `cloak.dev/` keys stay out of what the inner driver sees. Topology, secrets,
 * publish_context, content sources, mutable parameters and any field of a newer CSI spec pass
 * byte for byte. cloak keeps no state of its own here: each volume's key id is recorded in the
 * key lineage and returned in its volume_context, as the local controller does.
 */
export function createWrapControllerService(options: WrapControllerOptions): AsyncHandlers<ControllerHandlers> {
  const { inner, definition, keys } = options;

  /** Forwards `bytes` as `method`, returns the inner answer after `rewrite`, as bytes and decoded. */
  async function forward<K extends keyof ControllerDefinition & string>(
    method: K,
    bytes: Buffer,
    context: CallContext,
    rewrite: (response: Buffer) => Buffer | Promise<Buffer> = (b) => b,
  ): Promise<ResponseOf<ControllerDefinition[K]>> {
    const answer = await rewrite(await inner.callRaw(definition, method, bytes, bounds(context)));
    const def = definition[method] as unknown as MethodDefinition<object, object, object, object>;
    return respondWith(def.responseDeserialize(answer), answer) as ResponseOf<ControllerDefinition[K]>;
  }

  /**
   * A delete of something already gone is a success (CSI's idempotency rule), whatever the
   * inner driver says; once it is gone, `member` leaves its key's record.
   */
  async function forwardDelete<K extends "DeleteVolume" | "DeleteSnapshot">(method: K, bytes: Buffer, context: CallContext, member: LineageMember): Promise<object> {
    let answer: object = {};
    try {
      answer = await forward(method, bytes, context);
    } catch (err) {
      if (toGrpcStatus(err).code !== GrpcStatus.NOT_FOUND) throw err;
    }
    await keys.release(member, context.signal);
    return answer;
  }

  return {
    async CreateVolume(req, context) {
      if (req.volume_capabilities.length === 0) throw new InvalidArgumentError("volume_capabilities is required");
      const accesses = req.volume_capabilities.map((cap, i) => checkCapability(cap, `volume_capabilities[${i}]`));
      const parameters = wrapParameters(req.parameters);
      const requested = parseCapacityRange(req.capacity_range);
      // A copy without a size is sized by the inner driver from its source, which already
      // holds a header; anything else gets cloak's sizing: the request plus the header.
      const unsized = requested.requiredBytes === 0 && requested.limitBytes === 0 && req.volume_content_source !== null;
      const sizing = unsized ? undefined : sizeFor(requested, { integrity: parameters.integrity, minimumBytes: minimumCapacityBytes(accesses, DEFAULT_FILESYSTEM) });
      const overhead = sizing ? BigInt(sizing.diskBytes - sizing.capacityBytes) : HEADER;
      const range = sizing && {
        requiredBytes: BigInt(sizing.diskBytes),
        limitBytes: requested.limitBytes > 0 ? BigInt(requested.limitBytes) + overhead : 0n,
      };
      const source = contentSource(req.volume_content_source);
      const sourceKeyId = source && (await keys.sourceKey(source, context.signal));
      const response = await forward("CreateVolume", translate.createVolumeRequest(bytesOf(req), range), context, async (created) => {
        const volumeId = definition.CreateVolume.responseDeserialize(created).volume?.volume_id ?? "";
        if (volumeId === "") throw new InternalError(`the inner driver ${inner.target} answered CreateVolume ${req.name} without a volume id`);
        const keyId = await keys.bindVolume(volumeId, sourceKeyId, source !== undefined, context.signal);
        return translate.createVolumeResponse(created, overhead, { ...wrapContext(parameters), ...keyIdContext(keyId) });
      });
      const volume = response.volume;
      options.log.info(
        { name: req.name, volume_id: volume?.volume_id, keyId: volume?.volume_context[KEY_ID_CONTEXT_KEY], capacity: volume?.capacity_bytes, integrity: parameters.integrity },
        "volume created by the inner driver",
      );
      return response;
    },

    async DeleteVolume(req, context) {
      return forwardDelete("DeleteVolume", bytesOf(req), context, { kind: "volume", id: req.volume_id });
    },

    async ControllerPublishVolume(req, context) {
      checkCapability(req.volume_capability, "volume_capability");
      return forward("ControllerPublishVolume", translate.controllerPublishRequest(bytesOf(req)), context);
    },

    async ControllerUnpublishVolume(req, context) {
      return forward("ControllerUnpublishVolume", bytesOf(req), context);
    },

    async ValidateVolumeCapabilities(req, context) {
      const refusal = firstRefusal(req.volume_capabilities) ?? parameterRefusal(req.parameters);
      if (refusal !== undefined) {
        // The volume must still exist: an unknown one is NotFound, not "unsupported".
        await forward("ValidateVolumeCapabilities", translate.validateRequest(bytesOf(req)), context);
        return { message: refusal };
      }
      const answer = await forward("ValidateVolumeCapabilities", translate.validateRequest(bytesOf(req)), context);
      if (!answer.confirmed) return { message: answer.message };
      // Confirmed as asked (the inner driver confirmed their block versions).
      return {
        confirmed: {
          volume_context: req.volume_context,
          volume_capabilities: req.volume_capabilities,
          parameters: req.parameters,
          mutable_parameters: req.mutable_parameters,
        },
        message: answer.message,
      };
    },

    async ListVolumes(req, context) {
      return forward("ListVolumes", bytesOf(req), context, (answer) => translate.listVolumesResponse(answer, HEADER));
    },

    async ControllerGetVolume(req, context) {
      return forward("ControllerGetVolume", bytesOf(req), context, (answer) => translate.controllerGetVolumeResponse(answer, HEADER));
    },

    async GetCapacity(req, context) {
      req.volume_capabilities.forEach((cap, i) => checkCapability(cap, `volume_capabilities[${i}]`));
      wrapParameters(req.parameters);
      return forward("GetCapacity", translate.getCapacityRequest(bytesOf(req)), context, (answer) => translate.getCapacityResponse(answer, HEADER));
    },

    async ControllerGetCapabilities(_req, context) {
      const answer = await inner.call(definition, "ControllerGetCapabilities", {}, bounds(context));
      const honoured = answer.capabilities.filter((c) => HONOURED.includes(rpcType(c)));
      if (!honoured.some((c) => rpcType(c) === "CREATE_DELETE_VOLUME")) {
        throw new FailedPreconditionError(
          `the inner driver ${inner.target} does not advertise CREATE_DELETE_VOLUME: cloak wraps only drivers that provision volumes`,
        );
      }
      return { capabilities: honoured };
    },

    async CreateSnapshot(req, context) {
      const ours = Object.keys(req.parameters).filter(translate.isCloakKey);
      if (ours.length > 0) throw new InvalidArgumentError(`cloak takes no snapshot parameters (${ours.sort().join(", ")})`);
      const sourceKeyId = await keys.sourceKey({ kind: "volume", id: req.source_volume_id }, context.signal);
      const response = await forward("CreateSnapshot", translate.createSnapshotRequest(bytesOf(req)), context, (answer) => translate.snapshotResponse(answer, HEADER));
      const snapshotId = response.snapshot?.snapshot_id ?? "";
      if (snapshotId === "") throw new InternalError(`the inner driver ${inner.target} answered CreateSnapshot ${req.name} without a snapshot id`);
      await keys.bindSnapshot(snapshotId, sourceKeyId, context.signal);
      return response;
    },

    async DeleteSnapshot(req, context) {
      return forwardDelete("DeleteSnapshot", bytesOf(req), context, { kind: "snapshot", id: req.snapshot_id });
    },

    async ListSnapshots(req, context) {
      return forward("ListSnapshots", bytesOf(req), context, (answer) => translate.listSnapshotsResponse(answer, HEADER));
    },

    async GetSnapshot(req, context) {
      return forward("GetSnapshot", bytesOf(req), context, (answer) => translate.snapshotResponse(answer, HEADER));
    },

    async ControllerExpandVolume(req, context) {
      if (req.volume_capability) checkCapability(req.volume_capability, "volume_capability");
      const required = int64ToNumber(req.capacity_range?.required_bytes, "capacity_range.required_bytes");
      const limit = int64ToNumber(req.capacity_range?.limit_bytes, "capacity_range.limit_bytes");
      if (limit > 0 && required > limit) throw new InvalidArgumentError(`capacity_range.required_bytes ${required} exceeds limit_bytes ${limit}`);
      const range = { requiredBytes: BigInt(required) + HEADER, limitBytes: limit > 0 ? BigInt(limit) + HEADER : 0n };
      // Always node expansion: cloak must grow the dm-crypt mapping, even of a raw block volume.
      return forward("ControllerExpandVolume", translate.expandRequest(bytesOf(req), range), context, (answer) =>
        translate.expandResponse(answer, HEADER),
      );
    },

    async ControllerModifyVolume(req, context) {
      const ours = Object.keys(req.mutable_parameters).filter(translate.isCloakKey);
      if (ours.length > 0) throw new InvalidArgumentError(`cloak has no mutable parameters (${ours.sort().join(", ")})`);
      return forward("ControllerModifyVolume", translate.modifyVolumeRequest(bytesOf(req)), context);
    },
  };
}

type ResponseOf<M> = M extends MethodDefinition<infer _Req, infer _Res, infer _ReqOut, infer ResOut> ? ResOut : never;

function bounds(context: CallContext): CallBounds {
  return { signal: context.signal, deadline: callDeadline(context.call) };
}

/** The volume or snapshot a new volume copies, as the lineage names its members. */
function contentSource(source: VolumeContentSource__Output | null): LineageMember | undefined {
  if (source?.type === "volume") return { kind: "volume", id: source.volume?.volume_id ?? "" };
  if (source?.type === "snapshot") return { kind: "snapshot", id: source.snapshot?.snapshot_id ?? "" };
  return undefined;
}

function rpcType(capability: ControllerServiceCapability__Output): string {
  return capability.rpc?.type ?? "UNKNOWN";
}

function firstRefusal(capabilities: readonly VolumeCapability__Output[]): string | undefined {
  for (const [i, cap] of capabilities.entries()) {
    try {
      checkCapability(cap, `volume_capabilities[${i}]`);
    } catch (err) {
      return err instanceof Error ? err.message : String(err);
    }
  }
  return undefined;
}

function parameterRefusal(parameters: Readonly<Record<string, string>>): string | undefined {
  try {
    wrapParameters(parameters);
    return undefined;
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
}
