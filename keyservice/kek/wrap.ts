import { timingSafeEqual } from "node:crypto";
import { KeyMaterialError, MIN_KEY_MATERIAL_BYTES } from "../../lib/data-key.js";
import { KekDeniedError, type KekBackend } from "./backend.js";
import { openContext, sealContext, type Envelope, type WrapContext } from "./envelope.js";

/**
 * Wraps `secret` under the backend's current key and proves the result before handing it back:
 * the new blob is decrypted, its context header checked and its secret compared with the
 * original. Only a blob that passed may replace the one in use.
 */
export async function wrapSecret(backend: KekBackend, context: WrapContext, secret: Buffer): Promise<Envelope> {
  const plaintext = sealContext(context, secret);
  let wrapped;
  try {
    wrapped = await backend.encrypt(plaintext);
  } finally {
    plaintext.fill(0);
  }
  const envelope: Envelope = { ...wrapped, backend: backend.name, wrappedAt: new Date().toISOString() };
  const back = await unwrapSecret(backend, context, envelope);
  try {
    if (back.length !== secret.length || !timingSafeEqual(back, secret)) {
      throw new KekDeniedError(`the KMS at ${backend.endpoint} decrypted the new blob to a different secret: not using it`);
    }
  } finally {
    back.fill(0);
  }
  return envelope;
}

/** The secret inside `envelope`, its context checked. The caller wipes it. */
export async function unwrapSecret(backend: KekBackend, context: WrapContext, envelope: Envelope): Promise<Buffer> {
  if (envelope.backend !== backend.name) {
    throw new KeyMaterialError(`the master secret was wrapped by a ${envelope.backend} backend, not ${backend.name}`);
  }
  const plaintext = await backend.decrypt(envelope);
  try {
    const secret = openContext(context, plaintext);
    if (secret.length < MIN_KEY_MATERIAL_BYTES) {
      secret.fill(0);
      throw new KekDeniedError(`the unwrapped master secret holds ${secret.length} bytes; at least ${MIN_KEY_MATERIAL_BYTES} are required`);
    }
    return secret;
  } finally {
    plaintext.fill(0);
  }
}
