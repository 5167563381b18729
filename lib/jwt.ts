/**
 * A JWT's `exp` in ms since the epoch, read without verifying anything: for a token a verifier
 * has already accepted (the key service, after its TokenReview), or to notice before sending one
 * that it has run out (the node plugin). Undefined when it has none or cannot be read.
 */
export function jwtExpiry(token: string): number | undefined {
  const payload = token.split(".")[1];
  if (payload === undefined) return undefined;
  try {
    const exp = (JSON.parse(Buffer.from(payload, "base64url").toString("utf8")) as { exp?: unknown }).exp;
    return typeof exp === "number" ? exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}
