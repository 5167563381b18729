import { FailedPreconditionError } from "../../lib/errors.js";
import type { LineageMember } from "../../lib/key-lineage.js";
import { newKeyId } from "../keys/binding.js";
import type { KeyLineage } from "../keys/lineage.js";

/**
 * Key binding (csi/keys/binding.ts) for a wrapped driver's volumes. The wrapper keeps no state
 * and learns a volume's id only from the inner driver's answer, so it binds after the inner
 * call instead of before the disk exists as the local controller does. That is still before
 * any disk carries the key: a new inner disk is blank until the node formats it at NodeStage,
 * which needs the PV, which needs this CreateVolume's answer. A copy (clone, restore,
 * snapshot) does carry its source's header at once; Kubernetes keeps the source from being
 * deleted while it is copied (the provisioner's and the snapshot controller's source-protection
 * finalizers), so the source's key cannot be revoked before the copy is bound.
 *
 * Retries after a crash: the inner driver answers a repeated CreateVolume with the same id, and
 * the key that id already carries is found by its member label and kept, so a volume never
 * ends up in two keys' records.
 */
export interface WrapKeyBinding {
  /** The key id a copy of `source` carries, looked up before the inner driver copies anything. */
  sourceKey(source: LineageMember, signal: AbortSignal): Promise<string | undefined>;
  /**
   * Records the volume the inner driver created: its existing record's key id, else its
   * source's, else (a new blank disk) a new one. Undefined: a copy whose source has no record,
   * which only happens without a lineage (its header's UUID stays the key id, unchecked).
   */
  bindVolume(id: string, sourceKeyId: string | undefined, copy: boolean, signal: AbortSignal): Promise<string | undefined>;
  bindSnapshot(id: string, sourceKeyId: string | undefined, signal: AbortSignal): Promise<void>;
  /** After the inner driver deleted it: the member leaves its record (the last one revokes the key). */
  release(member: LineageMember, signal: AbortSignal): Promise<void>;
}

export function wrapKeyBinding(o: { lineage: KeyLineage; driver: string }): WrapKeyBinding {
  const { lineage, driver } = o;
  // Without a lineage nothing can be looked up, and a copy's key id stays unknown here.
  const recording = lineage.kind !== "none";
  const bind = (keyId: string, member: LineageMember, signal: AbortSignal) => lineage.bind({ keyId, driver, member, signal });
  return {
    async sourceKey(source, signal) {
      const keyId = await lineage.find({ driver, member: source, signal });
      if (keyId === undefined && recording) {
        throw new FailedPreconditionError(
          `${source.kind} ${source.id} has no key record (made before key binding, or imported): cloak cannot tell which key a copy of it carries`,
        );
      }
      return keyId;
    },
    async bindVolume(id, sourceKeyId, copy, signal) {
      const member: LineageMember = { kind: "volume", id };
      const keyId = (await lineage.find({ driver, member, signal })) ?? sourceKeyId ?? (copy ? undefined : newKeyId());
      if (keyId !== undefined) await bind(keyId, member, signal);
      return keyId;
    },
    async bindSnapshot(id, sourceKeyId, signal) {
      if (sourceKeyId !== undefined) await bind(sourceKeyId, { kind: "snapshot", id }, signal);
    },
    async release(member, signal) {
      await lineage.release({ driver, member, signal });
    },
  };
}
