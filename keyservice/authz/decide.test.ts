import { describe, expect, it } from "vitest";
import { KEY_ID_CONTEXT_KEY } from "../../lib/key-lineage.js";
import { TOPOLOGY_NODE_KEY } from "../../csi/node/node-service.js";
import { ClusterView } from "./cluster-view.js";
import { authorizeKey, checkCaller, type TokenCaller } from "./decide.js";
import { LOCAL_TOPOLOGY_KEY, projectAttachment, projectKey, projectPod, projectPv, projectPvc } from "./projections.js";

const DRIVERS = new Set(["csi.cloak.dev", "wrapped.cloak.dev"]);
const NODE_SA = "cloak-system/cloak-csi-node";
const K1 = "11111111-1111-4111-8111-111111111111";
const K2 = "22222222-2222-4222-8222-222222222222";

/** API objects as the server sends them (only the fields that matter, plus some noise). */
function pv(name: string, o: { keyId?: string; handle?: string; claim?: string; node?: string; driver?: string }): Record<string, unknown> {
  return {
    metadata: { name, uid: `uid-${name}`, managedFields: [{ manager: "x" }] },
    spec: {
      capacity: { storage: "1Gi" },
      csi: { driver: o.driver ?? "csi.cloak.dev", volumeHandle: o.handle ?? `vol-${name}`, volumeAttributes: { fsType: "ext4", ...(o.keyId ? { [KEY_ID_CONTEXT_KEY]: o.keyId } : {}) } },
      ...(o.claim ? { claimRef: { namespace: o.claim.split("/")[0], name: o.claim.split("/")[1] } } : {}),
      ...(o.node
        ? { nodeAffinity: { required: { nodeSelectorTerms: [{ matchExpressions: [{ key: LOCAL_TOPOLOGY_KEY, operator: "In", values: [o.node] }] }] } } }
        : {}),
    },
    status: { phase: "Bound" },
  };
}
const pvc = (claim: string, volumeName?: string) => ({ metadata: { namespace: claim.split("/")[0], name: claim.split("/")[1] }, spec: volumeName ? { volumeName } : {} });
function pod(ns: string, name: string, o: { node?: string; claims?: string[]; sa?: string; phase?: string; uid?: string; ephemeral?: string }) {
  return {
    metadata: { namespace: ns, name, uid: o.uid ?? `uid-${name}` },
    spec: {
      nodeName: o.node,
      serviceAccountName: o.sa,
      containers: [{ name: "c", image: "x" }],
      volumes: [
        { name: "cfg", configMap: { name: "x" } },
        ...(o.claims ?? []).map((c, i) => ({ name: `v${i}`, persistentVolumeClaim: { claimName: c } })),
        ...(o.ephemeral ? [{ name: o.ephemeral, ephemeral: { volumeClaimTemplate: { spec: {} } } }] : []),
      ],
    },
    status: { phase: o.phase ?? "Running" },
  };
}
const key = (keyId: string, o: { volumes?: string[]; snapshots?: string[]; node?: string; revoked?: boolean; driver?: string }) => ({
  metadata: { name: keyId },
  spec: { driver: o.driver ?? "csi.cloak.dev", node: o.node, volumes: o.volumes ?? [], snapshots: o.snapshots ?? [], revoked: o.revoked ?? false, ...(o.revoked ? { revokedAt: "2026-01-01T00:00:00Z" } : {}) },
});

function view(objects: {
  pvs?: Record<string, unknown>[];
  pvcs?: Record<string, unknown>[];
  pods?: Record<string, unknown>[];
  vas?: Record<string, unknown>[];
  keys?: Record<string, unknown>[];
}): ClusterView {
  const v = new ClusterView();
  const fill = <P>(items: Record<string, unknown>[] | undefined, project: (o: Record<string, unknown>) => P | undefined, sink: ClusterView["pvSink"] | ClusterView["claimSink"] | ClusterView["podSink"] | ClusterView["attachmentSink"] | ClusterView["keySink"]) => {
    const map = new Map<string, P>();
    for (const o of items ?? []) {
      const m = o["metadata"] as { name: string; namespace?: string };
      const p = project(o);
      if (p !== undefined) map.set(m.namespace ? `${m.namespace}/${m.name}` : m.name, p);
    }
    (sink as { replace(items: Map<string, P>): void }).replace(map);
  };
  fill(objects.pvs, (o) => projectPv(o, DRIVERS), v.pvSink);
  fill(objects.pvcs, projectPvc, v.claimSink);
  fill(objects.pods, (o) => projectPod(o, NODE_SA), v.podSink);
  fill(objects.vas, (o) => projectAttachment(o, DRIVERS), v.attachmentSink);
  fill(objects.keys, projectKey, v.keySink);
  return v;
}

describe("projections", () => {
  it("keep only what decisions read, and drop everything else", () => {
    expect(projectPv(pv("a", { keyId: K1, claim: "apps/data", node: "n1" }), DRIVERS)).toEqual({
      name: "a",
      driver: "csi.cloak.dev",
      handle: "vol-a",
      keyId: K1,
      claim: "apps/data",
      nodes: ["n1"],
    });
    expect(projectPv(pv("b", { driver: "ebs.csi.aws.com" }), DRIVERS)).toBeUndefined();
    expect(projectPvc(pvc("apps/data"))).toBeUndefined();
    expect(projectPod(pod("apps", "web", { node: "n1", claims: ["data"], ephemeral: "scratch" }), NODE_SA)).toEqual({
      uid: "uid-web",
      namespace: "apps",
      name: "web",
      node: "n1",
      finished: false,
      claims: ["apps/data", "apps/web-scratch"],
    });
    // Pods without claims are dropped, except the node plugin's own; unscheduled pods always.
    expect(projectPod(pod("apps", "nginx", { node: "n1" }), NODE_SA)).toBeUndefined();
    expect(projectPod(pod("cloak-system", "csi-x", { node: "n1", sa: "cloak-csi-node" }), NODE_SA)?.name).toBe("csi-x");
    expect(projectPod(pod("apps", "pending", { claims: ["data"] }), NODE_SA)).toBeUndefined();
    expect(projectAttachment({ spec: { attacher: "wrapped.cloak.dev", nodeName: "n2", source: { persistentVolumeName: "p" } } }, DRIVERS)).toEqual({ pv: "p", node: "n2" });
    expect(projectAttachment({ spec: { attacher: "other", nodeName: "n2", source: { persistentVolumeName: "p" } } }, DRIVERS)).toBeUndefined();
  });

  it("use the local disk source's topology key", () => {
    expect(LOCAL_TOPOLOGY_KEY).toBe(TOPOLOGY_NODE_KEY);
  });
});

describe("authorizeKey", () => {
  const cluster = () =>
    view({
      pvs: [
        pv("pv-a", { keyId: K1, claim: "apps/a" }),
        pv("pv-b", { keyId: K2, claim: "apps/b" }),
        // K1's clone, bound to a claim used on n2
        pv("pv-clone", { keyId: K1, claim: "apps/clone" }),
      ],
      pvcs: [pvc("apps/a", "pv-a"), pvc("apps/b", "pv-b"), pvc("apps/clone", "pv-clone")],
      pods: [pod("apps", "web-a", { node: "n1", claims: ["a"] }), pod("apps", "web-b", { node: "n2", claims: ["b"] }), pod("apps", "web-clone", { node: "n2", claims: ["clone"] })],
      keys: [key(K1, { volumes: ["vol-pv-a", "vol-pv-clone"] }), key(K2, { volumes: ["vol-pv-b"] })],
    });

  it("gives a node the key of a volume its pod uses, and a clone's key to the clone's node", () => {
    const v = cluster();
    expect(authorizeKey(v, "n1", K1)).toEqual({ allowed: true, via: "pod apps/web-a uses claim apps/a bound to pv-a" });
    expect(authorizeKey(v, "n2", K2)).toMatchObject({ allowed: true });
    expect(authorizeKey(v, "n2", K1)).toEqual({ allowed: true, via: "pod apps/web-clone uses claim apps/clone bound to pv-clone" });
  });

  it("refuses another node's volume, naming the volumes", () => {
    expect(authorizeKey(cluster(), "n1", K2)).toEqual({
      allowed: false,
      code: "PERMISSION_DENIED",
      reason: `node n1 holds none of the volumes with key ${K2} (pv-b)`,
      settling: true,
    });
  });

  it("refuses a key bound to nothing, a revoked key, and PVs its record does not list", () => {
    const v = view({
      pvs: [pv("forged", { keyId: K1, claim: "apps/f" }), pv("gone", { keyId: K2, claim: "apps/g" })],
      pvcs: [pvc("apps/f", "forged"), pvc("apps/g", "gone")],
      pods: [pod("apps", "p", { node: "n1", claims: ["f", "g"] })],
      keys: [key(K1, { volumes: ["vol-other"] }), key(K2, { revoked: true })],
    });
    expect(authorizeKey(v, "n1", "33333333-3333-4333-8333-333333333333")).toMatchObject({ allowed: false, reason: expect.stringMatching(/bound to no volume/), settling: true });
    expect(authorizeKey(v, "n1", K2)).toMatchObject({ allowed: false, reason: expect.stringMatching(/revoked at 2026-01-01T00:00:00Z/), settling: false });
    expect(authorizeKey(v, "n1", K1)).toMatchObject({ allowed: false, reason: expect.stringMatching(/1 PV\(s\) name it but its record does not list them/) });
  });

  it("refuses a handle two PVs claim: a PV made by hand to borrow another volume's key", () => {
    const v = view({
      pvs: [pv("real", { keyId: K1, claim: "apps/a", handle: "vol-x" }), pv("forged", { keyId: K1, claim: "apps/f", handle: "vol-x" })],
      pvcs: [pvc("apps/a", "real"), pvc("apps/f", "forged")],
      pods: [pod("apps", "owner", { node: "n1", claims: ["a"] }), pod("apps", "thief", { node: "n2", claims: ["f"] })],
      keys: [key(K1, { volumes: ["vol-x"] })],
    });
    expect(authorizeKey(v, "n2", K1)).toMatchObject({ allowed: false, reason: expect.stringMatching(/2 PVs share a volume handle: refused as ambiguous/) });
    expect(authorizeKey(v, "n1", K1).allowed).toBe(false);
    v.pvSink.remove("forged");
    expect(authorizeKey(v, "n1", K1).allowed).toBe(true);
  });

  it("does not follow a claim the PV is not bound to, or a finished pod", () => {
    const v = view({
      pvs: [pv("pv-a", { keyId: K1, claim: "apps/a" })],
      // The claim points elsewhere: a PV's claimRef alone proves nothing.
      pvcs: [pvc("apps/a", "pv-other")],
      pods: [pod("apps", "web", { node: "n1", claims: ["a"] })],
      keys: [key(K1, { volumes: ["vol-pv-a"] })],
    });
    expect(authorizeKey(v, "n1", K1).allowed).toBe(false);
    const finished = projectPod(pod("apps", "job", { node: "n1", claims: ["a"], phase: "Succeeded" }), NODE_SA);
    expect(finished?.finished).toBe(true);
  });

  it("allows a VolumeAttachment's node and, for local volumes, the node of the lineage and the PV", () => {
    const v = view({
      pvs: [pv("wrapped", { keyId: K1, driver: "wrapped.cloak.dev", handle: "projects/p/disks/d" }), pv("local", { keyId: K2, node: "n3" })],
      vas: [{ metadata: { name: "csi-1" }, spec: { attacher: "wrapped.cloak.dev", nodeName: "n2", source: { persistentVolumeName: "wrapped" } } }],
      keys: [key(K1, { driver: "wrapped.cloak.dev", volumes: ["projects/p/disks/d"] }), key(K2, { volumes: ["vol-local"], node: "n3" })],
    });
    expect(authorizeKey(v, "n2", K1)).toEqual({ allowed: true, via: "wrapped is attached to n2" });
    expect(authorizeKey(v, "n1", K1).allowed).toBe(false);
    expect(authorizeKey(v, "n3", K2)).toEqual({ allowed: true, via: "local is a local volume of n3" });
    expect(authorizeKey(v, "n1", K2).allowed).toBe(false);
  });

  it("follows cache updates: a pod deleted, a PV deleted, a key revoked", () => {
    const v = cluster();
    v.podSink.remove("apps/web-a");
    expect(authorizeKey(v, "n1", K1).allowed).toBe(false);
    v.podSink.upsert("apps/web-a", projectPod(pod("apps", "web-a", { node: "n1", claims: ["a"] }), NODE_SA)!);
    expect(authorizeKey(v, "n1", K1).allowed).toBe(true);
    v.pvSink.remove("pv-a");
    expect(authorizeKey(v, "n1", K1).allowed).toBe(false);
    v.keySink.upsert(K2, projectKey(key(K2, { revoked: true }))!);
    expect(authorizeKey(v, "n2", K2)).toMatchObject({ allowed: false, settling: false });
    expect(v.sizes()).toEqual({ pvs: 2, claims: 3, pods: 3, attachments: 0, keys: 2 });
  });
});

describe("checkCaller", () => {
  const v = view({
    pods: [pod("cloak-system", "csi-n1", { node: "n1", sa: "cloak-csi-node", uid: "u1" }), pod("cloak-system", "done", { node: "n1", sa: "cloak-csi-node", uid: "u2", phase: "Failed" })],
  });
  const caller = (o: Partial<TokenCaller>): TokenCaller => ({ serviceAccount: NODE_SA, podName: "csi-n1", podUid: "u1", node: "n1", ...o });

  it("takes the node from a token whose pod still runs there", () => {
    expect(checkCaller(v, caller({}), NODE_SA)).toEqual({ allowed: true, node: "n1", pod: "cloak-system/csi-n1" });
    expect(checkCaller(v, caller({ node: undefined }), NODE_SA)).toMatchObject({ allowed: true, node: "n1" });
  });

  it("refuses another service account, a gone, replaced, moved or finished pod", () => {
    expect(checkCaller(v, caller({ serviceAccount: "apps/default" }), NODE_SA)).toMatchObject({ code: "PERMISSION_DENIED", settling: false });
    expect(checkCaller(v, caller({ podName: "gone" }), NODE_SA)).toMatchObject({ code: "UNAUTHENTICATED", reason: expect.stringMatching(/does not exist/), settling: true });
    expect(checkCaller(v, caller({ podUid: "old" }), NODE_SA)).toMatchObject({ code: "UNAUTHENTICATED", reason: expect.stringMatching(/was replaced/) });
    expect(checkCaller(v, caller({ node: "n2" }), NODE_SA)).toMatchObject({ code: "UNAUTHENTICATED", reason: expect.stringMatching(/names node n2 but its pod .* runs on n1/), settling: false });
    expect(checkCaller(v, caller({ podName: "done", podUid: "u2" }), NODE_SA)).toMatchObject({ code: "UNAUTHENTICATED", reason: expect.stringMatching(/finished/) });
  });
});
