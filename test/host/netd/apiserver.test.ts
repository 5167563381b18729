import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AuthorizationV1Api, CoreV1Api, KubeConfig, VersionApi } from "@kubernetes/client-node";
import { startApiServer, type ApiServer } from "../../apiserver/apiserver.js";

// The API-server harness itself (test/apiserver), as netd's scenarios and the manifests' tests
// use it: a real kube-apiserver on etcd with RBAC enforced, client-certificate users and
// service-account tokens. Here without a namespace (127.0.0.1, free ports).
describe("test/apiserver harness", () => {
  let dir: string;
  let api: ApiServer;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "cloak-nd-api-"));
    api = await startApiServer({ dir });
  });

  afterAll(async () => {
    await api?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const client = (path: string) => {
    const kc = new KubeConfig();
    kc.loadFromFile(path);
    return kc;
  };

  it("serves the pinned Kubernetes version over TLS to system:masters", async () => {
    const version = await api.adminClient.makeApiClient(VersionApi).getCode();
    expect(version.gitVersion).toBe("v1.34.4");
    const ns = await api.adminClient.makeApiClient(CoreV1Api).listNamespace();
    expect(ns.items.map((n) => n.metadata?.name)).toContain("kube-system");
  });

  it("enforces RBAC for certificate users: nothing until a role is bound", async () => {
    const path = await api.userKubeconfig({ user: "alice", groups: ["team-a"] });
    const core = client(path).makeApiClient(CoreV1Api);
    await expect(core.listNode()).rejects.toMatchObject({ code: 403 });
    await api.grantClusterRole({ name: "alice-nodes", user: "alice", rules: [{ apiGroups: [""], resources: ["nodes"], verbs: ["list"] }] });
    await expect(core.listNode()).resolves.toMatchObject({ kind: "NodeList" });
    await expect(core.listNamespacedSecret({ namespace: "default" })).rejects.toMatchObject({ code: 403 });
  });

  it("issues service-account tokens that authenticate as the account", async () => {
    const path = await api.serviceAccountKubeconfig({ namespace: "default", name: "robot" });
    const review = await client(path).makeApiClient(AuthorizationV1Api).createSelfSubjectAccessReview({
      body: { spec: { resourceAttributes: { verb: "list", resource: "secrets", namespace: "default" } } },
    });
    expect(review.status?.allowed).toBe(false);
    await api.grantClusterRole({ name: "robot-secrets", serviceAccount: { namespace: "default", name: "robot" }, rules: [{ apiGroups: [""], resources: ["secrets"], verbs: ["list"] }] });
    await expect(client(path).makeApiClient(CoreV1Api).listNamespacedSecret({ namespace: "default" })).resolves.toMatchObject({ kind: "SecretList" });
  });
});
