import { InvalidArgumentError } from "../../lib/errors.js";
import { isFilesystem, type Filesystem } from "../tools/mkfs.js";

/** What a StorageClass may say about a cloak volume. */
export interface VolumeParameters {
  readonly fsType: Filesystem;
  /** dm-integrity (HMAC-SHA256) under dm-crypt: tampering is detected, expansion is impossible. */
  readonly integrity: boolean;
}

const ACCEPTED = ["fsType", "integrity"] as const;
/** Keys the CO's sidecars add (e.g. external-provisioner's --extra-create-metadata). */
const CO_PREFIX = "csi.storage.k8s.io/";

/** StorageClass parameters → volume parameters; anything unknown is refused, not ignored. */
export function parseParameters(parameters: Readonly<Record<string, string>>): VolumeParameters {
  const unknown = Object.keys(parameters).filter((key) => !(ACCEPTED as readonly string[]).includes(key) && !key.startsWith(CO_PREFIX));
  if (unknown.length > 0) {
    throw new InvalidArgumentError(`unknown parameters ${unknown.sort().join(", ")}; accepted: ${ACCEPTED.join(", ")}`);
  }
  const fsType = parameters["fsType"] ?? "ext4";
  if (!isFilesystem(fsType)) throw new InvalidArgumentError(`parameter fsType ${JSON.stringify(fsType)} is not supported; use ext4 or xfs`);
  const integrity = parameters["integrity"] ?? "false";
  if (integrity !== "true" && integrity !== "false") throw new InvalidArgumentError(`parameter integrity must be "true" or "false"`);
  return { fsType, integrity: integrity === "true" };
}

/** What the node needs to know at NodeStageVolume, passed as volume_context. */
export function volumeContext(parameters: VolumeParameters): Record<string, string> {
  return { fsType: parameters.fsType, integrity: String(parameters.integrity) };
}

export function sameParameters(a: VolumeParameters, b: VolumeParameters): boolean {
  return a.fsType === b.fsType && a.integrity === b.integrity;
}
