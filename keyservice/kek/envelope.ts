import { KeyMaterialError } from "../../lib/data-key.js";
import { KekDeniedError, type WrappedKey } from "./backend.js";

/**
 * The wrapped master secret as it is stored (the `master-secret.wrapped` key of the Secret): a
 * small versioned JSON document naming the backend and the KMS key that wrapped it, with the
 * ciphertext and the plugin's annotations in base64. Nothing in it is secret.
 *
 *   {"kind":"cloak.dev/wrapped-master-secret","version":1,"backend":"kmsv2",
 *    "keyId":"…","ciphertext":"…","annotations":{"…":"…"},"wrappedAt":"2026-12-01T…Z"}
 */
export const ENVELOPE_KIND = "cloak.dev/wrapped-master-secret";
export const ENVELOPE_VERSION = 1;
export const WRAPPED_FILE = "master-secret.wrapped";

export interface Envelope extends WrappedKey {
  readonly backend: string;
  /** When it was written; informational. */
  readonly wrappedAt: string;
}

export function formatEnvelope(envelope: Envelope): string {
  const annotations = Object.fromEntries(Object.entries(envelope.annotations).map(([k, v]) => [k, v.toString("base64")]));
  return `${JSON.stringify({
    kind: ENVELOPE_KIND,
    version: ENVELOPE_VERSION,
    backend: envelope.backend,
    keyId: envelope.keyId,
    ciphertext: envelope.ciphertext.toString("base64"),
    annotations,
    wrappedAt: envelope.wrappedAt,
  })}\n`;
}

/** Parses and checks an envelope; `source` names it in messages. */
export function parseEnvelope(text: string, source: string): Envelope {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw new KeyMaterialError(
      `${source} is not a wrapped master secret (not JSON)${looksPlain(text) ? "; it looks like a plain master secret: wrap it with `cloak keys wrap`" : ""}`,
    );
  }
  if (typeof doc !== "object" || doc === null || (doc as { kind?: unknown }).kind !== ENVELOPE_KIND) {
    throw new KeyMaterialError(`${source} is not a wrapped master secret (kind is not ${ENVELOPE_KIND})`);
  }
  const d = doc as Record<string, unknown>;
  if (d["version"] !== ENVELOPE_VERSION) {
    throw new KeyMaterialError(`${source} has envelope version ${JSON.stringify(d["version"])}; this cloak reads version ${ENVELOPE_VERSION}`);
  }
  const text64 = (field: string): string => {
    const v = d[field];
    if (typeof v !== "string" || v === "") throw new KeyMaterialError(`${source}: ${field} is missing or empty`);
    return v;
  };
  const ciphertext = base64(text64("ciphertext"), `${source}: ciphertext`);
  const rawAnnotations = d["annotations"] ?? {};
  if (typeof rawAnnotations !== "object" || rawAnnotations === null || Array.isArray(rawAnnotations)) {
    throw new KeyMaterialError(`${source}: annotations must be an object`);
  }
  const annotations: Record<string, Buffer> = {};
  for (const [k, v] of Object.entries(rawAnnotations)) {
    if (typeof v !== "string") throw new KeyMaterialError(`${source}: annotation ${k} is not a base64 string`);
    annotations[k] = base64(v, `${source}: annotation ${k}`);
  }
  return {
    backend: text64("backend"),
    keyId: text64("keyId"),
    ciphertext,
    annotations,
    wrappedAt: typeof d["wrappedAt"] === "string" ? d["wrappedAt"] : "",
  };
}

function base64(text: string, what: string): Buffer {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) throw new KeyMaterialError(`${what} is not base64`);
  return Buffer.from(text, "base64");
}

/** Plain secrets are random bytes; JSON starts with "{". */
function looksPlain(text: string): boolean {
  return !text.trimStart().startsWith("{");
}

/**
 * What a wrapped secret is for and whose it is. KMS v2 has no associated-data field, so this
 * context travels inside the plaintext the plugin encrypts and is checked after every decrypt:
 * a blob wrapped for another cluster (sharing the KMS key) or for another purpose is refused
 * even though the KMS opens it.
 */
export interface WrapContext {
  readonly purpose: string;
  readonly clusterId: string;
}

export const MASTER_SECRET_PURPOSE = "master-secret";
const MAGIC = Buffer.from("cloak-kek-v1\0", "latin1");
const CLUSTER_ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;

export function checkClusterId(id: string): string | undefined {
  return CLUSTER_ID.test(id) ? undefined : `cluster id ${JSON.stringify(id)} must be 1-128 of [A-Za-z0-9._:-], starting with a letter or digit`;
}

/** MAGIC ‖ len ‖ purpose ‖ len ‖ cluster id ‖ secret. The caller wipes the result. */
export function sealContext(context: WrapContext, secret: Buffer): Buffer {
  const purpose = Buffer.from(context.purpose, "utf8");
  const cluster = Buffer.from(context.clusterId, "utf8");
  if (purpose.length === 0 || purpose.length > 255 || cluster.length === 0 || cluster.length > 255) {
    throw new Error("purpose and cluster id must be 1-255 bytes");
  }
  return Buffer.concat([MAGIC, Buffer.of(purpose.length), purpose, Buffer.of(cluster.length), cluster, secret]);
}

/**
 * The secret inside a decrypted plaintext, after its context was checked against `expected`;
 * a copy, so the caller wipes both. A plaintext that is not ours, or is ours but for another
 * cluster or purpose, is a KekDeniedError: the KMS answered, and what it gave back may not be
 * used here.
 */
export function openContext(expected: WrapContext, plaintext: Buffer): Buffer {
  if (plaintext.length < MAGIC.length + 2 || !plaintext.subarray(0, MAGIC.length).equals(MAGIC)) {
    throw new KekDeniedError("the KMS decrypted something that is not a cloak wrapped secret (no cloak header): refusing it");
  }
  let at = MAGIC.length;
  const field = (): string => {
    const length = plaintext[at] ?? 0;
    const value = plaintext.subarray(at + 1, at + 1 + length);
    if (length === 0 || value.length !== length) throw new KekDeniedError("the cloak header of the decrypted secret is truncated: refusing it");
    at += 1 + length;
    return value.toString("utf8");
  };
  const purpose = field();
  const clusterId = field();
  if (purpose !== expected.purpose) {
    throw new KekDeniedError(`the wrapped secret is a ${JSON.stringify(purpose)}, not a ${JSON.stringify(expected.purpose)}: refusing it`);
  }
  if (clusterId !== expected.clusterId) {
    throw new KekDeniedError(
      `the wrapped secret belongs to cluster ${JSON.stringify(clusterId)}, not to this cluster ${JSON.stringify(expected.clusterId)}: refusing it`,
    );
  }
  return Buffer.from(plaintext.subarray(at));
}
