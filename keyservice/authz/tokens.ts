import { createHash } from "node:crypto";
import { UnavailableError } from "../../lib/errors.js";
import { jwtExpiry } from "../../lib/jwt.js";
import type { KubeClient } from "../../lib/kube/client.js";
import type { TokenCaller } from "./decide.js";

/**
 * Verifying the node plugin's projected service-account token with the API server that issued
 * it (TokenReview): signature, issuer, audience, expiry, and that the pod it is bound to still
 * exists with the same uid — all the API server's checks, none re-implemented here. The result
 * is cached per token (by its SHA-256) until the token expires or `ttlMs` passes, so one review
 * covers a node's calls for a minute; the pod's continued existence is checked on every call
 * against the informer cache instead (./decide.ts checkCaller).
 */

export type Review = { readonly ok: true; readonly caller: TokenCaller; readonly expiresAt: number | undefined } | { readonly ok: false; readonly reason: string };

/** Asks the API server about one token. Throws UnavailableError when it cannot be asked. */
export type TokenReviewer = (token: string, audience: string) => Promise<Review>;

const POD_NAME = "authentication.kubernetes.io/pod-name";
const POD_UID = "authentication.kubernetes.io/pod-uid";
const NODE_NAME = "authentication.kubernetes.io/node-name";

export function apiTokenReviewer(api: KubeClient): TokenReviewer {
  return async (token, audience) => {
    let status: TokenReviewStatus;
    try {
      const review = await api.json<{ status?: TokenReviewStatus }>("POST", "/apis/authentication.k8s.io/v1/tokenreviews", {
        body: { apiVersion: "authentication.k8s.io/v1", kind: "TokenReview", spec: { token, audiences: [audience] } },
        timeoutMs: 5_000,
      });
      status = review?.status ?? {};
    } catch (err) {
      throw new UnavailableError(`cannot verify the token: the API server did not answer the TokenReview (${(err as Error).message})`, { cause: err });
    }
    return interpretReview(status, audience, token);
  };
}

export interface TokenReviewStatus {
  authenticated?: boolean;
  error?: string;
  audiences?: string[];
  user?: { username?: string; extra?: Record<string, string[]> };
}

/** A TokenReview's status → who is calling, or why the token is refused. */
export function interpretReview(status: TokenReviewStatus, audience: string, token: string): Review {
  if (status.authenticated !== true) return { ok: false, reason: `the API server refused the token: ${truncate(status.error ?? "not authenticated")}` };
  // An API server that ignores spec.audiences answers with its own: refuse rather than assume.
  if (!(status.audiences ?? []).includes(audience)) return { ok: false, reason: `the token is not for audience ${audience}` };
  const username = status.user?.username ?? "";
  const match = /^system:serviceaccount:([^:]+):([^:]+)$/.exec(username);
  if (!match) return { ok: false, reason: `the token is not a service account's (${truncate(username)})` };
  const extra = status.user?.extra ?? {};
  const podName = extra[POD_NAME]?.[0];
  const podUid = extra[POD_UID]?.[0];
  if (!podName || !podUid) return { ok: false, reason: `the token of ${match[1]}/${match[2]} is not bound to a pod (use the projected token kubelet mounts)` };
  return {
    ok: true,
    caller: { serviceAccount: `${match[1]}/${match[2]}`, podName, podUid, node: extra[NODE_NAME]?.[0] },
    expiresAt: jwtExpiry(token),
  };
}

export interface TokenVerifierOptions {
  readonly review: TokenReviewer;
  readonly audience: string;
  /** How long a successful review is trusted (never past the token's expiry); 60 s by default. */
  readonly ttlMs?: number;
  /** How long a refusal is remembered, so a bad token cannot make every call a review; 5 s. */
  readonly negativeTtlMs?: number;
  /** Entries kept at most (oldest dropped first); 10 000 by default. */
  readonly maxEntries?: number;
  readonly now?: () => number;
}

export class TokenVerifier {
  private readonly cache = new Map<string, { review: Review; until: number }>();
  private readonly inflight = new Map<string, Promise<Review>>();
  private readonly ttlMs: number;
  private readonly negativeTtlMs: number;
  private readonly maxEntries: number;
  private readonly now: () => number;
  reviews = 0;

  constructor(private readonly o: TokenVerifierOptions) {
    this.ttlMs = o.ttlMs ?? 60_000;
    this.negativeTtlMs = o.negativeTtlMs ?? 5_000;
    this.maxEntries = o.maxEntries ?? 10_000;
    this.now = o.now ?? Date.now;
  }

  /** The review of `token`, from the cache or the API server. Throws UnavailableError. */
  verify(token: string): Promise<Review> | Review {
    const id = createHash("sha256").update(token).digest("base64");
    const now = this.now();
    const hit = this.cache.get(id);
    // An entry never outlives its token (see below), so an expired token is always reviewed again.
    if (hit && hit.until > now) return hit.review;
    if (hit) this.cache.delete(id);
    const pending = this.inflight.get(id);
    if (pending) return pending;
    const started = this.now();
    const promise = this.o.review(token, this.o.audience).then(
      (review) => {
        this.inflight.delete(id);
        const ttl = review.ok ? this.ttlMs : this.negativeTtlMs;
        const until = review.ok && review.expiresAt !== undefined ? Math.min(started + ttl, review.expiresAt) : started + ttl;
        this.remember(id, { review, until });
        return review;
      },
      (err: unknown) => {
        this.inflight.delete(id);
        throw err;
      },
    );
    this.reviews++;
    this.inflight.set(id, promise);
    return promise;
  }

  private remember(id: string, entry: { review: Review; until: number }): void {
    if (this.cache.size >= this.maxEntries) {
      const oldest = this.cache.keys().next().value;
      if (oldest !== undefined) this.cache.delete(oldest);
    }
    this.cache.set(id, entry);
  }
}

/** The bearer token of a call's `authorization` metadata, or undefined. */
export function bearerToken(values: readonly (string | Buffer)[]): string | undefined {
  const value = values[0];
  if (typeof value !== "string") return undefined;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(value);
  return match?.[1];
}

function truncate(text: string): string {
  return text.length > 200 ? `${text.slice(0, 200)}…` : text;
}
