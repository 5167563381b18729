import { FailedPreconditionError, UnavailableError } from "../../lib/errors.js";

/**
 * A key-encryption-key (KEK) backend: something that holds a key cloak never sees and encrypts
 * or decrypts a few bytes with it. The shape is the Kubernetes KMS v2 plugin API's (Status,
 * Encrypt, Decrypt), which the first backend speaks (./kmsv2.ts); a direct backend (PKCS#11,
 * a cloud KMS, Vault transit) fits the same interface without the key service changing.
 */
export interface KekBackend {
  /** Recorded in the envelope, so that a blob is never handed to the wrong kind of backend. */
  readonly name: string;
  /** Where it is, for log lines and messages. */
  readonly endpoint: string;
  /** Health and the id of the key new encryptions use now (a change means the KEK rotated). */
  status(): Promise<KekStatus>;
  encrypt(plaintext: Buffer): Promise<WrappedKey>;
  decrypt(wrapped: WrappedKey): Promise<Buffer>;
  close(): void;
}

export interface KekStatus {
  /** The backend says it can serve (KMS v2: healthz "ok"). */
  readonly healthy: boolean;
  /** Its own words when it cannot ("ok" otherwise). */
  readonly healthz: string;
  /** The current write key. */
  readonly keyId: string;
}

/** What encryption returned, all of which decryption needs back. */
export interface WrappedKey {
  readonly ciphertext: Buffer;
  readonly keyId: string;
  readonly annotations: Readonly<Record<string, Buffer>>;
}

/**
 * The backend answered, and the answer is no: the key is disabled or destroyed, access was
 * revoked, or the blob is not one it (or this cluster) will open. Asking again will not help
 * until someone changes something; the key service stops serving on it.
 */
export class KekDeniedError extends FailedPreconditionError {}

/**
 * The backend could not be asked: not running, not answering in time, overloaded, or failing
 * in a way that says nothing about the key. The key service keeps serving from memory on it.
 */
export class KekUnavailableError extends UnavailableError {}
