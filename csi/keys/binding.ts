import { randomUUID } from "node:crypto";
import { InvalidArgumentError } from "../../lib/errors.js";
import { isLineageName, KEY_ID_CONTEXT_KEY } from "../../lib/key-lineage.js";

/**
 * Binding a volume to its key at creation, for every controller that creates cloak volumes
 * (the local disk source's, a wrapper's): the controller chooses the key id — the LUKS UUID
 * the node will format with — or inherits it from the volume or snapshot it copies, records it
 * in the key's lineage (./lineage.ts) before the disk exists, and returns it in the volume
 * context, which Kubernetes keeps as the PV's immutable volumeAttributes.
 */

export { KEY_ID_CONTEXT_KEY };

/** A new volume's key id: a random UUID, lowercase (it also names its CloakKey object). */
export function newKeyId(): string {
  return randomUUID();
}

/** The key id a new volume gets: its source's (a clone or restore carries its header), or a new one. */
export function keyIdFor(source: { keyId?: string | undefined } | undefined): string {
  return source?.keyId ?? newKeyId();
}

/** The volume_context entry that carries the key id; none for a volume made before binding existed. */
export function keyIdContext(keyId: string | undefined): Record<string, string> {
  return keyId === undefined ? {} : { [KEY_ID_CONTEXT_KEY]: keyId };
}

/** The key id a NodeStageVolume request's volume_context names, checked; undefined when absent. */
export function keyIdFromContext(context: Readonly<Record<string, string>>): string | undefined {
  const keyId = context[KEY_ID_CONTEXT_KEY];
  if (keyId === undefined || keyId === "") return undefined;
  if (!isLineageName(keyId)) throw new InvalidArgumentError(`volume_context.${KEY_ID_CONTEXT_KEY} ${JSON.stringify(keyId)} is not a lowercase UUID`);
  return keyId;
}
