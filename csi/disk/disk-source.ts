/**
 * Where a volume's (ciphertext) disk comes from. The node half makes a volume's disk a block
 * device on this node; the controller half (creating and deleting disks) is separate so that a
 * node plugin needs no controller rights. The built-in source is the local one (sparse files
 * on loop devices); others wrap an existing cloud CSI driver.
 */
export interface NodeDiskSource {
  readonly kind: string;
  /**
   * Makes the volume's disk a block device here and returns its path. Idempotent: a disk
   * already attached is returned as is. NotFoundError when no such volume exists.
   */
  attach(volumeId: string, options?: { signal?: AbortSignal | undefined }): Promise<string>;
  /** The block device of an attached volume, or undefined. */
  findAttached(volumeId: string): Promise<string | undefined>;
  /** Releases the disk. Idempotent; a volume that is not attached (or unknown) is fine. */
  detach(volumeId: string, options?: { signal?: AbortSignal | undefined }): Promise<void>;
  /** After the disk grew (ControllerExpandVolume): make the device show the new size. */
  refreshSize(volumeId: string, options?: { signal?: AbortSignal | undefined }): Promise<void>;
}
