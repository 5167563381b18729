import { createPrivateKey, createPublicKey, generateKeyPairSync } from "node:crypto";
import { readFile, stat } from "node:fs/promises";
import { writeFileAtomic } from "../lib/atomic-file.js";
import { FailedPreconditionError } from "../lib/errors.js";

/**
 * WireGuard keys are Curve25519 keys written as base64 of their 32 raw bytes. Node's crypto
 * makes and converts them in-process, so a private key never goes through argv or a child
 * process except `wg set ... private-key /dev/stdin`.
 */
export interface KeyPair {
  /** base64; never logged (lib/log.ts redacts `privateKey` fields as a net). */
  readonly privateKey: string;
  readonly publicKey: string;
}

/** PKCS#8 wrapping of a raw X25519 private key (RFC 8410): the 32 key bytes follow it. */
const PKCS8_X25519_PREFIX = Buffer.from("302e020100300506032b656e04220420", "hex");

const KEY_PATTERN = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/;

/** True for the base64 spelling of a 32-byte key, as `wg` prints and accepts it. */
export function isWireGuardKey(text: string): boolean {
  return KEY_PATTERN.test(text);
}

export function generateKeyPair(): KeyPair {
  const { privateKey } = generateKeyPairSync("x25519");
  const jwk = privateKey.export({ format: "jwk" });
  if (!jwk.d || !jwk.x) throw new Error("x25519 key export lacks its components");
  return { privateKey: b64urlToB64(jwk.d), publicKey: b64urlToB64(jwk.x) };
}

/** The public key of a private key (what `wg pubkey` prints). */
export function publicKeyOf(privateKey: string): string {
  if (!isWireGuardKey(privateKey)) throw new FailedPreconditionError("not a WireGuard private key");
  const der = Buffer.concat([PKCS8_X25519_PREFIX, Buffer.from(privateKey, "base64")]);
  const x = createPublicKey(createPrivateKey({ key: der, format: "der", type: "pkcs8" })).export({ format: "jwk" }).x;
  if (!x) throw new Error("x25519 public key export lacks x");
  return b64urlToB64(x);
}

/**
 * Reads the key file, or creates it (mode 0600, written to a temporary file and renamed, so a
 * crash never leaves a half-written key) when it does not exist. A file that exists but does
 * not hold a key is an error: replacing it silently would change the node's identity.
 */
export async function loadOrCreateKey(path: string): Promise<{ keys: KeyPair; created: boolean }> {
  const existing = await readKeyFile(path);
  if (existing) return { keys: existing, created: false };
  const keys = generateKeyPair();
  await writeKeyFile(path, keys.privateKey);
  return { keys, created: true };
}

/** A state file's text; undefined when it does not exist (yet). */
export async function readStateFile(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
}

export async function readKeyFile(path: string): Promise<KeyPair | undefined> {
  const text = await readStateFile(path);
  if (text === undefined) return undefined;
  const privateKey = text.trim();
  if (!isWireGuardKey(privateKey)) {
    throw new FailedPreconditionError(`${path} exists but does not hold a WireGuard private key`);
  }
  const mode = (await stat(path)).mode & 0o777;
  if ((mode & 0o077) !== 0) {
    throw new FailedPreconditionError(`${path} is readable by others (mode ${mode.toString(8)}); expected 0600`);
  }
  return { privateKey, publicKey: publicKeyOf(privateKey) };
}

/** Atomically replaces the key file with `privateKey` (mode 0600, fsynced before the rename). */
export function writeKeyFile(path: string, privateKey: string): Promise<void> {
  return writeFileAtomic(path, `${privateKey}\n`, { mode: 0o600 });
}

function b64urlToB64(text: string): string {
  return Buffer.from(text, "base64url").toString("base64");
}
