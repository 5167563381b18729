import { lstat, realpath } from "node:fs/promises";
import { basename, dirname, isAbsolute, join, normalize } from "node:path";
import { InvalidArgumentError } from "../lib/errors.js";
import type { VolumeCapability__Output } from "../proto/gen/csi/v1/VolumeCapability.js";
import { isFilesystem, type Filesystem } from "./tools/mkfs.js";

/**
 * Checks of request fields shared by the CSI handlers. Everything that names a file or a
 * device is checked here, before any handler touches the system.
 */

/** Long enough for any CO-generated name ("pvc-" + UUID is 40), short enough for a dm name. */
const MAX_VOLUME_ID = 128;
const VOLUME_ID = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** Volume ids become file names and device-mapper names: they must stay plain names. */
export function volumeId(value: string, field = "volume_id"): string {
  if (value === "") throw new InvalidArgumentError(`${field} is required`);
  if (value.length > MAX_VOLUME_ID) throw new InvalidArgumentError(`${field} is longer than ${MAX_VOLUME_ID} characters`);
  if (!VOLUME_ID.test(value) || value.includes("..")) {
    throw new InvalidArgumentError(
      `${field} ${JSON.stringify(value)} is not a valid volume id: use letters, digits, '.', '_' and '-', starting with a letter or digit`,
    );
  }
  return value;
}

const MAX_PATH = 4096;

/**
 * A path the CO hands us (staging or target). It must be absolute, already normal (no "..",
 * no "//", no trailing "/"), and inside one of the allowed roots (kubelet's directory), so a
 * confused or hostile caller cannot make the plugin mount over /etc.
 */
export function hostPath(value: string, field: string, allowedRoots: readonly string[]): string {
  if (value === "") throw new InvalidArgumentError(`${field} is required`);
  if (value.length > MAX_PATH || value.includes("\0")) throw new InvalidArgumentError(`${field} is not a valid path`);
  if (!isAbsolute(value)) throw new InvalidArgumentError(`${field} ${JSON.stringify(value)} must be absolute`);
  if (normalize(value) !== value || value.split("/").includes("..") || (value.length > 1 && value.endsWith("/"))) {
    throw new InvalidArgumentError(`${field} ${JSON.stringify(value)} must be a normalised path`);
  }
  if (!allowedRoots.some((root) => value.startsWith(root.endsWith("/") ? root : `${root}/`))) {
    throw new InvalidArgumentError(`${field} ${JSON.stringify(value)} is outside the allowed directories (${allowedRoots.join(", ")})`);
  }
  return value;
}

/**
 * hostPath, then the same check on where the path really leads: the real path (every
 * symlink resolved) of its longest existing prefix, with the rest appended, must be below the
 * real path of an allowed root. A path under kubelet's directory whose parent is a symlink to
 * /etc is refused here, before anything is attached or formatted. Returns the resolved path,
 * which is what the handler then mounts on and compares with /proc/self/mountinfo (which
 * shows real paths). A dangling symlink on the way is refused: mkdir would follow it.
 */
export async function resolvedHostPath(value: string, field: string, allowedRoots: readonly string[]): Promise<string> {
  const path = hostPath(value, field, allowedRoots);
  const resolved = await resolveExisting(path, field);
  const roots = await Promise.all(allowedRoots.map((root) => realpath(root).catch(() => normalize(root))));
  if (!roots.some((root) => isBelow(resolved, root))) {
    throw new InvalidArgumentError(
      `${field} ${JSON.stringify(value)} leads through a symlink to ${JSON.stringify(resolved)}, outside the allowed directories (${allowedRoots.join(", ")})`,
    );
  }
  return resolved;
}

async function resolveExisting(path: string, field: string): Promise<string> {
  const rest: string[] = [];
  let head = path;
  for (;;) {
    try {
      return join(await realpath(head), ...rest);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== "ENOENT" && code !== "ENOTDIR") throw err;
      if ((await lstat(head).catch(() => undefined))?.isSymbolicLink()) {
        throw new InvalidArgumentError(`${field} ${JSON.stringify(path)} leads through a dangling symlink (${head})`);
      }
      if (head === "/") return path;
      rest.unshift(basename(head));
      head = dirname(head);
    }
  }
}

function isBelow(path: string, root: string): boolean {
  return path.startsWith(root.endsWith("/") ? root : `${root}/`);
}

export type AccessMode = "SINGLE_NODE_WRITER" | "SINGLE_NODE_READER_ONLY";

/** What a volume capability asks of the node. */
export type Access =
  | { readonly kind: "mount"; readonly fsType: Filesystem | undefined; readonly mountFlags: readonly string[]; readonly mode: AccessMode }
  | { readonly kind: "block"; readonly mode: AccessMode };

/**
 * Local volumes live on one node and cloak advertises no multi-writer capability, so only the
 * single-node modes are accepted.
 */
const SUPPORTED_MODES: readonly string[] = ["SINGLE_NODE_WRITER", "SINGLE_NODE_READER_ONLY"];

export function capability(cap: VolumeCapability__Output | null | undefined, field = "volume_capability"): Access {
  if (!cap) throw new InvalidArgumentError(`${field} is required`);
  const mode = cap.access_mode?.mode;
  if (mode === undefined || mode === "UNKNOWN") throw new InvalidArgumentError(`${field}.access_mode is required`);
  if (!SUPPORTED_MODES.includes(mode)) {
    throw new InvalidArgumentError(`${field}.access_mode ${mode} is not supported; use ${SUPPORTED_MODES.join(" or ")}`);
  }
  const accessMode = mode as AccessMode;
  if (cap.access_type === "block" && cap.block) return { kind: "block", mode: accessMode };
  if (cap.access_type === "mount" && cap.mount) {
    const fsType = cap.mount.fs_type;
    if (fsType !== "" && !isFilesystem(fsType)) {
      throw new InvalidArgumentError(`${field}.mount.fs_type ${JSON.stringify(fsType)} is not supported; use ext4 or xfs`);
    }
    for (const flag of cap.mount.mount_flags) {
      if (flag === "" || /[\s\0]/.test(flag)) throw new InvalidArgumentError(`${field}.mount.mount_flags has an invalid entry`);
    }
    return { kind: "mount", fsType: fsType === "" ? undefined : fsType, mountFlags: cap.mount.mount_flags, mode: accessMode };
  }
  throw new InvalidArgumentError(`${field} must have an access type (mount or block)`);
}
