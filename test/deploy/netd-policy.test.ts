import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  AuthenticationV1Api,
  CoreV1Api,
  KubeConfig,
  PatchStrategy,
  setHeaderOptions,
  type V1DaemonSet,
  type V1Pod,
} from "@kubernetes/client-node";
import { join } from "node:path";
import { PORT_ANNOTATION, PUBLIC_KEY_ANNOTATION } from "../../netd/nodes.js";
import { serviceAccountToken } from "./tokens.js";
import { NAMESPACE, adminClient, deployCluster, find, kubectl, manifestsDir, render } from "./kube.js";

// netd's RBAC allows patching any Node; the ValidatingAdmissionPolicy in
// manifests/base/netd-admission-policy.yaml narrows that to its own Node's netd annotations,
// using the node that the caller's pod-bound token names. Checked here on a real v1.34 API
// server with real tokens: TokenRequests bound to Pod objects made from netd's DaemonSet.

const NODE_A = "cloak-deploy-node-a";
const NODE_B = "cloak-deploy-node-b";
const NODE_NAME_EXTRA = "authentication.kubernetes.io/node-name";

let core: CoreV1Api;
const clients = new Map<string, CoreV1Api>();

function tokenClient(token: string): KubeConfig {
  const c = deployCluster();
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: "c", server: c.url, caFile: c.caFile }],
    users: [{ name: "u", token }],
    contexts: [{ name: "c", cluster: "c", user: "u" }],
    currentContext: "c",
  });
  return kc;
}

/** A token for cloak-netd, bound to `pod` when given (what kubelet mounts), else unbound. */
const netdToken = (pod?: V1Pod) => serviceAccountToken(core, { namespace: NAMESPACE, serviceAccount: "cloak-netd", ...(pod ? { pod } : {}) });

const annotate = (api: CoreV1Api, node: string, annotations: Record<string, string | null>) =>
  api.patchNode({ name: node, body: { metadata: { annotations } } }, setHeaderOptions("Content-Type", PatchStrategy.MergePatch));

/** The patch netd itself sends when it publishes its key (netd/agent.ts). */
const publish = (api: CoreV1Api, node: string, key: string) => annotate(api, node, { [PUBLIC_KEY_ANNOTATION]: key, [PORT_ANNOTATION]: "51872" });

async function rejection(p: Promise<unknown>): Promise<{ code?: number; body?: string }> {
  try {
    await p;
  } catch (err) {
    return err as { code?: number; body?: string };
  }
  throw new Error("the request was allowed");
}

beforeAll(async () => {
  await kubectl(["apply", "-k", join(manifestsDir(), "overlays/local")]);
  core = adminClient().makeApiClient(CoreV1Api);
  const netd = find<V1DaemonSet>(await render("overlays/local"), "DaemonSet", "cloak-netd");
  for (const node of [NODE_A, NODE_B]) {
    await core.createNode({ body: { metadata: { name: node, labels: { "kubernetes.io/hostname": node } } } });
    // The pod kubelet would run there: netd's own pod template, bound to the node. Nothing
    // runs it (no kubelet); it exists so that a token can be bound to it.
    const pod = await core.createNamespacedPod({
      namespace: NAMESPACE,
      body: { metadata: { name: `cloak-netd-${node}`, labels: netd.spec?.template.metadata?.labels ?? {} }, spec: { ...netd.spec?.template.spec, nodeName: node } as V1Pod["spec"] },
    });
    clients.set(node, tokenClient(await netdToken(pod)).makeApiClient(CoreV1Api));
  }
  clients.set("unbound", tokenClient(await netdToken()).makeApiClient(CoreV1Api));
});

afterAll(async () => {
  for (const node of [NODE_A, NODE_B]) {
    await core?.deleteNamespacedPod({ namespace: NAMESPACE, name: `cloak-netd-${node}`, gracePeriodSeconds: 0 }).catch(() => undefined);
    await core?.deleteNode({ name: node }).catch(() => undefined);
  }
});

describe("netd's admission policy on a real API server", () => {
  it("sees the node in a pod-bound token (the fact the policy relies on)", async () => {
    for (const node of [NODE_A, NODE_B]) {
      const pod = await core.readNamespacedPod({ namespace: NAMESPACE, name: `cloak-netd-${node}` });
      const review = await tokenClient(await netdToken(pod)).makeApiClient(AuthenticationV1Api).createSelfSubjectReview({ body: {} });
      expect(review.status?.userInfo?.username).toBe(`system:serviceaccount:${NAMESPACE}:cloak-netd`);
      expect(review.status?.userInfo?.extra?.[NODE_NAME_EXTRA]).toEqual([node]);
    }
    const unbound = await tokenClient(await netdToken()).makeApiClient(AuthenticationV1Api).createSelfSubjectReview({ body: {} });
    expect(unbound.status?.userInfo?.extra?.[NODE_NAME_EXTRA]).toBeUndefined();
  });

  it("lets netd publish and remove its key on its own Node", async () => {
    const a = clients.get(NODE_A) as CoreV1Api;
    await publish(a, NODE_A, "a-public-key");
    expect((await core.readNode({ name: NODE_A })).metadata?.annotations?.[PUBLIC_KEY_ANNOTATION]).toBe("a-public-key");
    // `cloak netd cleanup --purge` removes them the same way.
    await annotate(a, NODE_A, { [PUBLIC_KEY_ANNOTATION]: null, [PORT_ANNOTATION]: null });
    expect((await core.readNode({ name: NODE_A })).metadata?.annotations?.[PUBLIC_KEY_ANNOTATION]).toBeUndefined();
    await publish(clients.get(NODE_B) as CoreV1Api, NODE_B, "b-public-key");
  });

  it("refuses netd on node A rewriting node B's key", async () => {
    const err = await rejection(publish(clients.get(NODE_A) as CoreV1Api, NODE_B, "a-steals-b"));
    expect(err.code).toBe(403);
    expect(err.body).toContain(`netd on node ${NODE_A} may not change Node ${NODE_B}`);
    expect((await core.readNode({ name: NODE_B })).metadata?.annotations?.[PUBLIC_KEY_ANNOTATION]).toBe("b-public-key");
  });

  it("refuses anything on its own Node but the netd annotations", async () => {
    const a = clients.get(NODE_A) as CoreV1Api;
    const other = await rejection(annotate(a, NODE_A, { "example.com/other": "x" }));
    expect(other.code).toBe(403);
    expect(other.body).toContain("only the netd.cloak.dev/ annotations");
    const label = await rejection(
      a.patchNode({ name: NODE_A, body: { metadata: { labels: { "node-role.kubernetes.io/control-plane": "" } } } }, setHeaderOptions("Content-Type", PatchStrategy.MergePatch)),
    );
    expect(label.code).toBe(403);
    const taint = await rejection(
      a.patchNode({ name: NODE_A, body: { spec: { unschedulable: true } } }, setHeaderOptions("Content-Type", PatchStrategy.MergePatch)),
    );
    expect(taint.code).toBe(403);
  });

  it("refuses a netd token that names no node", async () => {
    const err = await rejection(publish(clients.get("unbound") as CoreV1Api, NODE_A, "unbound"));
    expect(err.code).toBe(403);
    expect(err.body).toContain("names no node");
  });

  it("leaves everyone else alone", async () => {
    await core.patchNode(
      { name: NODE_B, body: { metadata: { labels: { "example.com/admin": "yes" }, annotations: { "example.com/admin": "yes" } } } },
      setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
    );
    expect((await core.readNode({ name: NODE_B })).metadata?.labels?.["example.com/admin"]).toBe("yes");
  });
});
