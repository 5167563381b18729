import { describe, expect, it } from "vitest";
import { UnavailableError } from "../../lib/errors.js";
import { bearerToken, interpretReview, TokenVerifier, type Review, type TokenReviewStatus } from "./tokens.js";

const AUD = "cloak-keyservice";
const jwt = (claims: Record<string, unknown>): string =>
  `${Buffer.from('{"alg":"RS256"}').toString("base64url")}.${Buffer.from(JSON.stringify(claims)).toString("base64url")}.sig`;

/** What a v1.34 API server answers for a pod-bound token (copied from a real TokenReview). */
const authenticated: TokenReviewStatus = {
  authenticated: true,
  audiences: [AUD],
  user: {
    username: "system:serviceaccount:cloak-system:cloak-csi-node",
    extra: {
      "authentication.kubernetes.io/credential-id": ["JTI=x"],
      "authentication.kubernetes.io/node-name": ["n1"],
      "authentication.kubernetes.io/node-uid": ["nu"],
      "authentication.kubernetes.io/pod-name": ["csi-n1"],
      "authentication.kubernetes.io/pod-uid": ["pu"],
    },
  },
};

describe("interpretReview", () => {
  it("takes service account, pod and node from a pod-bound token", () => {
    expect(interpretReview(authenticated, AUD, jwt({ exp: 2000 }))).toEqual({
      ok: true,
      caller: { serviceAccount: "cloak-system/cloak-csi-node", podName: "csi-n1", podUid: "pu", node: "n1" },
      expiresAt: 2_000_000,
    });
  });

  it("refuses unauthenticated, other-audience, non-service-account and unbound tokens", () => {
    expect(interpretReview({ authenticated: false, error: "[invalid bearer token, token audiences [\"x\"] is invalid for the target audiences]" }, AUD, "t")).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/^the API server refused the token: \[invalid bearer token/),
    });
    expect(interpretReview({ ...authenticated, audiences: ["https://kubernetes.default.svc"] }, AUD, "t")).toMatchObject({ ok: false, reason: "the token is not for audience cloak-keyservice" });
    expect(interpretReview({ ...authenticated, user: { username: "alice" } }, AUD, "t")).toMatchObject({ ok: false, reason: expect.stringMatching(/not a service account's/) });
    expect(interpretReview({ ...authenticated, user: { username: "system:serviceaccount:a:b", extra: {} } }, AUD, "t")).toMatchObject({ ok: false, reason: expect.stringMatching(/not bound to a pod/) });
  });
});

describe("TokenVerifier", () => {
  const ok = (expiresAt?: number): Review => ({ ok: true, caller: { serviceAccount: "a/b", podName: "p", podUid: "u", node: "n" }, expiresAt });

  it("reviews a token once, shares a review in flight, and trusts it until the ttl or the token's expiry", async () => {
    let now = 0;
    let calls = 0;
    const verifier = new TokenVerifier({ audience: AUD, ttlMs: 60_000, now: () => now, review: () => (calls++, Promise.resolve(ok(30_000))) });
    const [a, b] = await Promise.all([verifier.verify("t1"), verifier.verify("t1")]);
    expect(a).toEqual(b);
    expect(calls).toBe(1);
    now = 29_000;
    expect(await verifier.verify("t1")).toMatchObject({ ok: true });
    expect(calls).toBe(1);
    // Past the token's own expiry: the cache entry is gone and the API server is asked again.
    now = 30_001;
    await verifier.verify("t1");
    expect(calls).toBe(2);
  });

  it("remembers a refusal briefly, forgets a failure at once, and stays bounded", async () => {
    let now = 0;
    let calls = 0;
    let fail = false;
    const verifier = new TokenVerifier({
      audience: AUD,
      negativeTtlMs: 5_000,
      maxEntries: 2,
      now: () => now,
      review: (token) => {
        calls++;
        if (fail) return Promise.reject(new UnavailableError("API server down"));
        return Promise.resolve(token === "bad" ? { ok: false, reason: "nope" } : ok());
      },
    });
    await verifier.verify("bad");
    await verifier.verify("bad");
    expect(calls).toBe(1);
    now = 5_001;
    await verifier.verify("bad");
    expect(calls).toBe(2);
    fail = true;
    await expect(verifier.verify("new")).rejects.toThrow(UnavailableError);
    fail = false;
    expect(await verifier.verify("new")).toMatchObject({ ok: true });
    await verifier.verify("x");
    await verifier.verify("y");
    const before = calls;
    await verifier.verify("bad");
    expect(calls).toBe(before + 1);
  });
});

describe("bearerToken", () => {
  it("reads the authorization metadata", () => {
    expect(bearerToken(["Bearer abc.def.ghi"])).toBe("abc.def.ghi");
    expect(bearerToken(["bearer  x "])).toBe("x");
    expect(bearerToken([])).toBeUndefined();
    expect(bearerToken(["Basic x"])).toBeUndefined();
    expect(bearerToken([Buffer.from("Bearer x")])).toBeUndefined();
  });
});
