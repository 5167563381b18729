import { createHash } from "node:crypto";
import { join } from "node:path";

/**
 * Where cloak asks a wrapped driver to put a volume, the way kubelet's block mapper does
 * (pkg/volume/csi/csi_block.go): a staging directory, and a publish path — a file — where the
 * driver places the block device. Both live in a per-volume directory under the inner root,
 * which must be inside the tree every vendor's node pod mounts (/var/lib/kubelet/plugins/
 * kubernetes.io/csi). Named by a hash of the volume id: cloud ids are long and hold slashes,
 * and NodeUnstage, NodeExpand and stats must find the same paths from the id alone.
 */
export interface InnerPaths {
  /** cloak's per-volume directory; removed at unstage. */
  readonly dir: string;
  /** The inner driver's staging_target_path (a directory cloak creates). */
  readonly staging: string;
  /** The inner driver's target_path (a file the driver creates). */
  readonly device: string;
}

export function innerPaths(root: string, volumeId: string): InnerPaths {
  const dir = join(root, createHash("sha256").update(volumeId).digest("hex").slice(0, 40));
  return { dir, staging: join(dir, "staging"), device: join(dir, "device") };
}
