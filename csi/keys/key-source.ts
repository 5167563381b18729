/**
 * Where volume keys come from. A key is a LUKS keyslot passphrase for one volume, found by its
 * key id, which is the volume's LUKS UUID. Implementations: a local file-based source for
 * development (./file-key-source.ts) and the key service client.
 */
export interface KeySource {
  /** A short name for logs and Probe messages ("file", "keyservice"). */
  readonly kind: string;
  /**
   * The key for `keyId`, `length` bytes. The caller owns the buffer and zeroes it after use.
   * Fails with UnavailableError when the source cannot be reached (kubelet retries), and
   * InvalidArgumentError for an id the source refuses.
   */
  getKey(keyId: string, length: number, options?: { signal?: AbortSignal | undefined }): Promise<Buffer>;
  /** Resolves when the source can serve keys; rejects (UnavailableError) when it cannot. */
  probe(options?: { signal?: AbortSignal | undefined }): Promise<void>;
  /** Releases connections; further calls fail. */
  close(): Promise<void>;
}

/**
 * Keyslot passphrases are 256 random bits. That is already beyond brute force, which is why
 * the LUKS keyslots use the cheapest PBKDF allowed (see csi/luks/format.ts).
 */
export const VOLUME_PASSPHRASE_BYTES = 32;
