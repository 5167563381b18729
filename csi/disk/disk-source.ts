import type { NodeGetInfoResponse } from "../../proto/gen/csi/v1/NodeGetInfoResponse.js";
import type { Access } from "../validate.js";

/**
 * Where a volume's (ciphertext) disk comes from. The node half makes a volume's disk a block
 * device on this node; the controller half (creating and deleting disks) is separate so that a
 * node plugin needs no controller rights. The built-in source is the local one (sparse files
 * on loop devices); the wrap source (csi/wrap/) gets the disk from another CSI driver.
 */
export interface NodeDiskSource {
  readonly kind: string;
  /**
   * Makes the volume's disk a block device here and returns its path. Idempotent: a disk
   * already attached is returned as is. NotFoundError when no such volume exists.
   */
  attach(request: AttachRequest): Promise<string>;
  /** The block device of an attached volume, or undefined. */
  findAttached(volumeId: string): Promise<string | undefined>;
  /** Releases the disk. Idempotent; a volume that is not attached (or unknown) is fine. */
  detach(request: DetachRequest): Promise<void>;
  /** After the disk grew (ControllerExpandVolume): make the device show the new size. */
  refreshSize(request: RefreshRequest): Promise<void>;

  // What a source may change about the node service; each has the local source's behaviour
  // when left out.

  /** Checks a volume id and returns it (default: csi/validate.ts's plain names). */
  checkVolumeId?(value: string): string;
  /** Where cloak's own settings sit in volume_context (default: `fsType`, `integrity`). */
  readonly contextKeys?: ContextKeys;
  /**
   * Whether a stage that failed for good is undone (unmount, close, detach) before the error
   * is returned. kubelet does not unstage a volume whose stage failed with a final error, so
   * a source whose attachment holds something beyond this node (another driver's publication,
   * a cloud attachment that cannot detach while it is held) must release it itself.
   */
  readonly undoFailedStage?: boolean;
  /** NodeGetInfo's answer, when the source rather than cloak knows the node's identity. */
  nodeInfo?(options: CallBounds): Promise<NodeGetInfoResponse>;
}

/** The caller's cancellation and deadline (ms since the epoch), for calls a source makes. */
export interface CallBounds {
  readonly signal: AbortSignal;
  readonly deadline?: number | undefined;
}

export interface AttachRequest extends CallBounds {
  readonly volumeId: string;
  /** cloak's staging path (kubelet's). */
  readonly stagingPath: string;
  /** What NodeStageVolume was asked for: the access mode matters to a wrapped driver. */
  readonly access: Access;
  /** NodeStageVolume's volume_context without cloak's own keys. */
  readonly volumeContext: Readonly<Record<string, string>>;
  readonly publishContext: Readonly<Record<string, string>>;
  readonly secrets: Readonly<Record<string, string>>;
}

export interface DetachRequest extends CallBounds {
  readonly volumeId: string;
  readonly stagingPath: string;
}

export interface RefreshRequest extends CallBounds {
  readonly volumeId: string;
  /** The size the decrypted volume must reach (NodeExpandVolume's required_bytes). */
  readonly requiredBytes: number;
}

export interface ContextKeys {
  readonly fsType: string;
  readonly integrity: string;
}

/** A disk the controller manages: a volume's, or a snapshot's copy of one. */
export interface DiskRef {
  readonly kind: "volume" | "snapshot";
  readonly id: string;
}

/**
 * The controller half: creating, copying, growing and destroying disks. Cloak's own state
 * (names, parameters, sizes) is kept by the controller service; a disk source only holds bytes.
 */
export interface ControllerDiskSource {
  readonly kind: string;
  /** An empty (all-zero) disk for a volume being created; replaces a partial one left by an interrupted attempt. */
  createEmpty(volumeId: string, diskBytes: number, options?: { signal?: AbortSignal | undefined }): Promise<void>;
  /**
   * A byte-for-byte copy (LUKS header and ciphertext) of a volume's or snapshot's disk as a new
   * disk, then grown to `diskBytes` if that is larger. A mounted source volume is frozen for
   * the copy so that its filesystem is consistent. Resumable: a copy an earlier call (or an
   * earlier process) left unfinished is continued while its source is unchanged, and a copy
   * already finished is not made again. It is not bound to any one request's deadline.
   */
  copy(from: DiskRef, to: DiskRef, diskBytes: number, options?: { onProgress?: ((progress: CopyProgress) => void) | undefined }): Promise<void>;
  /** Crypto-erase (overwrite the LUKS header and keyslots) of the disk and of any partial copy of it, then remove. Idempotent. */
  destroy(disk: DiskRef, options?: { signal?: AbortSignal | undefined }): Promise<void>;
  /** Grows a volume's disk; never shrinks it. */
  grow(volumeId: string, diskBytes: number): Promise<void>;
  /** Whether a node has the volume's disk attached (it is staged, or being staged). */
  isAttached(volumeId: string): Promise<boolean>;
  /**
   * What the source can hold for cloak's disks: its free space plus what cloak's disks already
   * occupy. Disks may be sparse; the controller counts their full sizes against this.
   */
  poolBytes(): Promise<number>;
  /** After a restart: undo what a killed process left half-done (a frozen filesystem, temporary files). */
  recover(): Promise<void>;
  /** The disks there are, finished and partial, for reconciliation with the records. */
  inventory(): Promise<DiskInventory>;
  /** Where the disk can be read on this machine, for header edits; undefined for remote disks. */
  localPath(disk: DiskRef): string | undefined;
}

export interface CopyProgress {
  readonly copiedBytes: number;
  readonly totalBytes: number;
}

export interface DiskInventory {
  readonly disks: readonly DiskRef[];
  /** Copies begun and not finished. */
  readonly partials: readonly DiskRef[];
}
