import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CoreV1Api, type V1Node } from "@kubernetes/client-node";
import { createLogger } from "../../../lib/log.js";
import { KubeClient, type KubeApiError } from "../../../lib/kube/client.js";
import { Reflector } from "../../../lib/kube/reflector.js";
import { nodePath, type Node } from "../../../lib/kube/types.js";
import { KubeNodeSource } from "../../../netd/node-source.js";
import { PUBLIC_KEY_ANNOTATION } from "../../../netd/nodes.js";
import { startApiServer, type ApiServer } from "../../apiserver/apiserver.js";

// cloak's own Kubernetes client (lib/kube), which netd uses instead of @kubernetes/client-node,
// against a real API server: both kinds of kubeconfig credentials, a paged list parsed item by
// item, watch events, the API server's 410 for an expired resourceVersion, merge patches.
describe("lib/kube against a real API server", () => {
  let dir: string;
  let api: ApiServer;
  let core: CoreV1Api;
  const logger = createLogger({ component: "test", level: "silent" });

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "cloak-nd-watch-"));
    // Compaction every 2 s (not 5 min) and no watch cache (which keeps its own window of
    // history): the 410 tests need history the API server no longer has, within seconds.
    api = await startApiServer({ dir, extraArgs: ["--etcd-compaction-interval=2s", "--watch-cache=false"] });
    core = api.adminClient.makeApiClient(CoreV1Api);
  });

  afterAll(async () => {
    await api?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const node = (i: number): V1Node => ({ metadata: { name: `watched-${i}` }, spec: { podCIDR: `10.${i}.0.0/24`, podCIDRs: [`10.${i}.0.0/24`] } });

  it("lists in pages, then follows additions and deletions, keeping only what it projects", async () => {
    for (let i = 0; i < 5; i++) await core.createNode({ body: node(i) });
    const client = await KubeClient.connect(api.kubeconfigPath); // client certificate
    const seen: Array<{ reason: string; nodes: Map<string, string> }> = [];
    const reflector = new Reflector<string>({
      client,
      path: "/api/v1/nodes",
      logger,
      pageSize: 2,
      project: (n) => (n as Node).spec?.podCIDR ?? "",
      onChange: (nodes, reason) => seen.push({ reason, nodes: new Map(nodes) }),
    });
    const last = async (pred: (nodes: Map<string, string>) => boolean) => {
      await expect.poll(() => seen.some((s) => pred(s.nodes)), { timeout: 20_000 }).toBe(true);
      return seen.at(-1);
    };
    reflector.start();
    try {
      const listed = await last((nodes) => nodes.size === 5);
      // Five nodes at two per page: one list (three requests) reported once, complete.
      expect(seen.filter((s) => s.reason === "list").map((s) => s.nodes.size)).toEqual([5]);
      expect(listed?.nodes.get("watched-3")).toBe("10.3.0.0/24");
      expect(reflector.synced).toBe(true);

      await core.createNode({ body: node(5) });
      expect((await last((nodes) => nodes.has("watched-5")))?.reason).toBe("added");
      await core.deleteNode({ name: "watched-0" });
      const after = await last((nodes) => !nodes.has("watched-0"));
      expect(after?.reason).toBe("deleted");
      expect([...(after?.nodes.keys() ?? [])].sort()).toEqual(["watched-1", "watched-2", "watched-3", "watched-4", "watched-5"]);
    } finally {
      await reflector.stop();
      client.close();
    }
  });

  it("authenticates with a service-account token and gets the API server's refusal as a 403", async () => {
    const path = await api.serviceAccountKubeconfig({ namespace: "default", name: "netd-client" });
    const client = await KubeClient.connect(path);
    try {
      await expect(client.json("GET", "/api/v1/nodes")).rejects.toMatchObject({ code: 403, reason: "Forbidden" });
      await api.grantClusterRole({ name: "netd-client-nodes", serviceAccount: { namespace: "default", name: "netd-client" }, rules: [{ apiGroups: [""], resources: ["nodes"], verbs: ["list"] }] });
      await expect.poll(async () => (await client.list("/api/v1/nodes", {}, () => undefined).catch(() => ({ items: -1 }))).items, { timeout: 10_000 }).toBeGreaterThan(0);
    } finally {
      client.close();
    }
  });

  it("answers 410 Gone for a resourceVersion the API server no longer has, and the reflector lists again", async () => {
    const client = await KubeClient.connect(api.kubeconfigPath);
    const configMap = "/api/v1/namespaces/default/configmaps";
    await client.json("POST", configMap, { body: { metadata: { name: "churn" }, data: { n: "0" } } });
    // Writes that are not Nodes move etcd's revision on, and compaction follows them.
    const churn = async () => {
      for (let i = 1; i <= 3; i++) await client.mergePatch(`${configMap}/churn`, { data: { n: String(i) } });
      await new Promise((r) => setTimeout(r, 5_000));
    };
    const lists: number[] = [];
    const logged: string[] = [];
    const reflector = new Reflector<string>({
      client,
      path: "/api/v1/nodes",
      logger: createLogger({ component: "test", level: "info", destination: { write: (line: string) => void logged.push(line) } }),
      // The server ends each watch after a second, so the reflector soon watches again from
      // its list's resourceVersion, which compaction has removed by then.
      watchSeconds: 1,
      project: (n) => (n as Node).metadata?.name ?? "",
      onChange: (nodes, reason) => {
        if (reason === "list") lists.push(nodes.size);
      },
    });
    try {
      const old = (await client.list("/api/v1/nodes", {}, () => undefined)).resourceVersion;
      await churn();
      // The API server's own answer: an ERROR event with a 410 Status (or a 410 response).
      const events: Array<{ type: string; code: unknown }> = [];
      await client
        .watch("/api/v1/nodes", { resourceVersion: old, timeoutSeconds: 5 }, (e) => events.push({ type: e.type, code: (e.object as { code?: unknown }).code }))
        .catch((err: unknown) => events.push({ type: "ERROR", code: (err as KubeApiError).code }));
      expect(events).toContainEqual({ type: "ERROR", code: 410 });

      reflector.start();
      await expect.poll(() => lists.length, { timeout: 10_000 }).toBe(1);
      await churn();
      await expect.poll(() => lists.length, { timeout: 20_000 }).toBeGreaterThanOrEqual(2);
      expect(new Set(lists).size).toBe(1); // every list saw the same, complete set
      expect(logged.some((l) => l.includes("watch expired (410 Gone); listing again"))).toBe(true);
      expect(logged.some((l) => l.includes("list/watch failed"))).toBe(false);
    } finally {
      await reflector.stop();
      client.close();
    }
  });

  it("reads one Node and sets and removes its annotations with a merge patch (netd's node source)", async () => {
    const client = await KubeClient.connect(api.kubeconfigPath);
    const source = new KubeNodeSource(client, logger);
    try {
      await source.annotate("watched-1", { [PUBLIC_KEY_ANNOTATION]: "OIflxh+Ly9cPY2hfHIF6q7qF7UkIPTw2J1I/UyQKU1g=" });
      expect((await source.get("watched-1"))?.publicKey).toBe("OIflxh+Ly9cPY2hfHIF6q7qF7UkIPTw2J1I/UyQKU1g=");
      await source.annotate("watched-1", { [PUBLIC_KEY_ANNOTATION]: null });
      expect((await client.json<Node>("GET", nodePath("watched-1"))).metadata?.annotations?.[PUBLIC_KEY_ANNOTATION]).toBeUndefined();
      expect(await source.get("no-such-node")).toBeUndefined();
    } finally {
      await source.stop();
    }
  });
});
