import { describe, expect, it } from "vitest";
import { PermissionDeniedError, UnauthenticatedError } from "../../lib/errors.js";
import { AuthzRefusal, createAuthorizer } from "./authorizer.js";
import { ClusterView } from "./cluster-view.js";
import type { KeyView, PodView, PvView } from "./projections.js";
import { TokenVerifier, type Review } from "./tokens.js";

const NODE_SA = "cloak-system/cloak-csi-node";
const K = "11111111-1111-4111-8111-111111111111";
const plugin: PodView = { uid: "u1", namespace: "cloak-system", name: "csi-n1", node: "n1", finished: false, claims: [] };
const app: PodView = { uid: "u2", namespace: "apps", name: "web", node: "n1", finished: false, claims: ["apps/data"] };
const pv: PvView = { name: "pv-1", driver: "csi.cloak.dev", handle: "vol-1", keyId: K, claim: "apps/data", nodes: [] };
const key: KeyView = { keyId: K, driver: "csi.cloak.dev", node: undefined, volumes: new Set(["vol-1"]), snapshots: 0, revoked: false, revokedAt: undefined };

function setup(graceMs: number) {
  const view = new ClusterView();
  const reviews: Record<string, Review> = {
    good: { ok: true, caller: { serviceAccount: NODE_SA, podName: "csi-n1", podUid: "u1", node: "n1" }, expiresAt: undefined },
    other: { ok: true, caller: { serviceAccount: "apps/default", podName: "web", podUid: "u2", node: "n1" }, expiresAt: undefined },
  };
  const verifier = new TokenVerifier({ audience: "a", review: (t) => Promise.resolve(reviews[t] ?? { ok: false, reason: "the API server refused the token: expired" }) });
  return { view, authz: createAuthorizer({ view, verifier, nodeServiceAccount: NODE_SA, graceMs }) };
}

async function refusal(p: Promise<unknown>): Promise<AuthzRefusal> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(AuthzRefusal);
  return err as AuthzRefusal;
}

describe("the authoriser", () => {
  it("refuses a missing or refused token as Unauthenticated, another service account as PermissionDenied", async () => {
    const { view, authz } = setup(0);
    view.podSink.upsert("apps/web", app);
    expect((await refusal(authz.identify(undefined))).error).toBeInstanceOf(UnauthenticatedError);
    expect((await refusal(authz.identify("expired"))).error.message).toMatch(/expired/);
    const other = await refusal(authz.identify("other"));
    expect(other.error).toBeInstanceOf(PermissionDeniedError);
    expect(other.caller).toEqual({ pod: "apps/web", node: "n1" });
  });

  it("waits up to the grace period for caches that are catching up, and no longer", async () => {
    const { view, authz } = setup(2_000);
    // The plugin's pod and the volume arrive a moment after the request.
    setTimeout(() => view.podSink.upsert("cloak-system/csi-n1", plugin), 20);
    const caller = await authz.identify("good");
    expect(caller).toEqual({ node: "n1", pod: "cloak-system/csi-n1" });
    setTimeout(() => {
      view.keySink.upsert(K, key);
      view.pvSink.upsert("pv-1", pv);
      view.claimSink.upsert("apps/data", "pv-1");
      view.podSink.upsert("apps/web", app);
    }, 20);
    expect(await authz.authorize(caller, K)).toBe("pod apps/web uses claim apps/data bound to pv-1");

    const started = performance.now();
    const denied = await refusal(authz.authorize({ node: "n2", pod: "cloak-system/csi-n2" }, K));
    expect(performance.now() - started).toBeGreaterThanOrEqual(1_900);
    expect(denied.error.message).toMatch(/node n2 holds none of the volumes/);
  });

  it("refuses at once what no cache update could turn", async () => {
    const { view, authz } = setup(5_000);
    view.keySink.upsert(K, { ...key, volumes: new Set(), revoked: true, revokedAt: "2026-01-01T00:00:00Z" });
    const started = performance.now();
    const denied = await refusal(authz.authorize({ node: "n1", pod: "x/y" }, K));
    expect(performance.now() - started).toBeLessThan(500);
    expect(denied.error.message).toMatch(/revoked/);
  });
});
