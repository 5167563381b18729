import { createSecretKey, hkdfSync, type KeyObject } from "node:crypto";
import { constants } from "node:fs";
import { access, readFile, stat } from "node:fs/promises";
import { InvalidArgumentError } from "./errors.js";

/**
 * Per-volume data keys: HKDF-SHA256 over the cluster's master secret, salted with the cluster
 * salt, with info "key-" + the key id. Constellation derives its keys the same way, so the same
 * master secret and salt give the same keys in both.
 */
export function deriveDataKey(masterSecret: Buffer | KeyObject, salt: Buffer, dataKeyId: string, length: number): Buffer {
  checkDataKeyRequest(dataKeyId, length);
  return Buffer.from(hkdfSync("sha256", masterSecret, salt, Buffer.from(`key-${dataKeyId}`, "utf8"), length));
}

/**
 * The master secret as a KeyObject, for a process that derives many keys: hkdfSync given a
 * Buffer makes a KeyObject of it on every call, which costs four times the derivation itself.
 */
export function masterKeyObject(masterSecret: Buffer): KeyObject {
  return createSecretKey(masterSecret);
}

export const MIN_DATA_KEY_BYTES = 16;
export const MAX_DATA_KEY_BYTES = 64;
const MAX_DATA_KEY_ID_BYTES = 256;
const DATA_KEY_ID = /^[A-Za-z0-9._:-]+$/;

/** Throws InvalidArgument for an id or length the key service would refuse. */
export function checkDataKeyRequest(dataKeyId: string, length: number): void {
  if (dataKeyId === "") throw new InvalidArgumentError("data key id is empty");
  if (Buffer.byteLength(dataKeyId, "utf8") > MAX_DATA_KEY_ID_BYTES) {
    throw new InvalidArgumentError(`data key id is longer than ${MAX_DATA_KEY_ID_BYTES} bytes`);
  }
  if (!DATA_KEY_ID.test(dataKeyId)) {
    throw new InvalidArgumentError("data key id may only contain A-Z, a-z, 0-9, '.', '_', ':' and '-'");
  }
  if (!Number.isInteger(length) || length < MIN_DATA_KEY_BYTES || length > MAX_DATA_KEY_BYTES) {
    throw new InvalidArgumentError(`data key length must be ${MIN_DATA_KEY_BYTES}..${MAX_DATA_KEY_BYTES} bytes, got ${length}`);
  }
}

/** Raised when key material on disk is unusable; startup stops with this message. */
export class KeyMaterialError extends Error {}

export const MIN_KEY_MATERIAL_BYTES = 32;

/**
 * Reads a master secret or salt file. Refuses a file that is missing, unreadable, shorter than
 * 32 bytes, or readable by everyone (mode o+r): a secret that every local user can read is
 * not a secret. Kubernetes Secret volumes therefore need `defaultMode: 0400` (or 0440).
 */
export async function readKeyMaterial(path: string, what: string): Promise<Buffer> {
  let mode: number;
  let isRegularFile: boolean;
  try {
    const info = await stat(path);
    mode = info.mode;
    isRegularFile = info.isFile();
    await access(path, constants.R_OK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? "error";
    throw new KeyMaterialError(`${what} file ${path} cannot be read (${code})`);
  }
  if ((mode & 0o004) !== 0) {
    throw new KeyMaterialError(
      `${what} file ${path} is world-readable (mode ${(mode & 0o777).toString(8)}); make it 0400 or 0440`,
    );
  }
  if (!isRegularFile) {
    throw new KeyMaterialError(`${what} file ${path} is not a regular file`);
  }
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (err) {
    // access() as root says yes to nearly anything; the read itself is the real test.
    const code = (err as NodeJS.ErrnoException).code ?? "error";
    throw new KeyMaterialError(`${what} file ${path} cannot be read (${code})`);
  }
  if (bytes.length < MIN_KEY_MATERIAL_BYTES) {
    bytes.fill(0);
    throw new KeyMaterialError(`${what} file ${path} holds ${bytes.length} bytes; at least ${MIN_KEY_MATERIAL_BYTES} are required`);
  }
  return bytes;
}
