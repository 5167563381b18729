import { InvalidArgumentError } from "../../lib/errors.js";
import type { VolumeCapability__Output } from "../../proto/gen/csi/v1/VolumeCapability.js";
import type { ContextKeys } from "../disk/disk-source.js";
import * as validate from "../validate.js";
import { CLOAK_PREFIX, isCloakKey } from "./translate.js";

/**
 * What cloak accepts in front of a wrapped driver: the rules that do not depend on the inner
 * driver's answers. Pure.
 */

/** Where cloak's own settings sit in a wrapped volume's volume_context, beside the inner driver's keys. */
export const WRAP_CONTEXT_KEYS: ContextKeys = { fsType: `${CLOAK_PREFIX}fsType`, integrity: `${CLOAK_PREFIX}integrity` };

export interface WrapParameters {
  readonly integrity: boolean;
}

const CLOAK_PARAMETERS = [WRAP_CONTEXT_KEYS.integrity] as const;

/**
 * Inner parameters that only change how a driver formats a filesystem (AWS EBS: blockSize,
 * inodeSize, bytesPerInode, numberOfInodes, ext4BigAlloc, ext4ClusterSize). A wrapped driver
 * never formats — cloak asks it for raw block and makes the filesystem on the decrypted device
 * — and cloak's mkfs does not take them, so they are refused rather than silently dropped.
 * Compared case-insensitively, as EBS reads them.
 */
export const FORMATTING_PARAMETERS = ["blockSize", "inodeSize", "bytesPerInode", "numberOfInodes", "ext4BigAlloc", "ext4ClusterSize"] as const;

/** Splits CreateVolume's parameters: cloak's (`cloak.dev/...`) are read; the rest go to the inner driver. */
export function wrapParameters(parameters: Readonly<Record<string, string>>): WrapParameters {
  const unknown = Object.keys(parameters).filter((k) => isCloakKey(k) && !(CLOAK_PARAMETERS as readonly string[]).includes(k));
  if (unknown.length > 0) {
    throw new InvalidArgumentError(`unknown cloak parameters ${unknown.sort().join(", ")}; cloak accepts ${CLOAK_PARAMETERS.join(", ")}`);
  }
  const formatting = Object.keys(parameters).filter((k) => FORMATTING_PARAMETERS.some((f) => f.toLowerCase() === k.toLowerCase()));
  if (formatting.length > 0) {
    throw new InvalidArgumentError(
      `parameters ${formatting.sort().join(", ")} only change how the inner driver formats a filesystem, which it never does for cloak ` +
        "(cloak asks it for a raw block device and makes the filesystem on the decrypted device); cloak's mkfs does not apply them, so they are refused",
    );
  }
  const integrity = parameters[WRAP_CONTEXT_KEYS.integrity] ?? "false";
  if (integrity !== "true" && integrity !== "false") throw new InvalidArgumentError(`parameter ${WRAP_CONTEXT_KEYS.integrity} must be "true" or "false"`);
  return { integrity: integrity === "true" };
}

/** cloak's keys for a new volume's volume_context; empty for the default, so most volumes carry only the inner driver's. */
export function wrapContext(parameters: WrapParameters): Record<string, string> {
  return parameters.integrity ? { [WRAP_CONTEXT_KEYS.integrity]: "true" } : {};
}

const MULTI_NODE = ["MULTI_NODE_READER_ONLY", "MULTI_NODE_SINGLE_WRITER", "MULTI_NODE_MULTI_WRITER"];

/**
 * A capability cloak can honour over a wrapped disk, or InvalidArgument saying why not. A
 * filesystem on a disk that several nodes write corrupts it, and two nodes staging a fresh
 * shared disk at once would both format it, so every multi-node mode is refused; the rest is
 * what the local source accepts (csi/validate.ts).
 */
export function checkCapability(cap: VolumeCapability__Output | null | undefined, field: string): validate.Access {
  const mode = cap?.access_mode?.mode;
  if (mode !== undefined && MULTI_NODE.includes(mode)) {
    const why =
      cap?.access_type === "mount" && mode !== "MULTI_NODE_READER_ONLY"
        ? "a filesystem on a disk that several nodes write (each through its own dm-crypt mapping) corrupts it"
        : "each node would open, and a fresh disk would be formatted by, whichever node stages it first; cloak serves single-node access modes";
    throw new InvalidArgumentError(`${field}.access_mode ${mode} is not supported through cloak: ${why}`);
  }
  return validate.capability(cap, field);
}
