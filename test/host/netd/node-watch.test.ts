import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CoreV1Api, type V1Node } from "@kubernetes/client-node";
import { createLogger } from "../../../lib/log.js";
import { NodeWatch } from "../../../netd/node-watch.js";
import { startApiServer, type ApiServer } from "../../apiserver/apiserver.js";

// netd's Node watch against a real API server: a list that takes several pages, then watch
// events, with only the projection kept.
describe("netd's node watch", () => {
  let dir: string;
  let api: ApiServer;
  let core: CoreV1Api;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "cloak-nd-watch-"));
    api = await startApiServer({ dir });
    core = api.adminClient.makeApiClient(CoreV1Api);
  });

  afterAll(async () => {
    await api?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const node = (i: number): V1Node => ({ metadata: { name: `watched-${i}` }, spec: { podCIDR: `10.${i}.0.0/24`, podCIDRs: [`10.${i}.0.0/24`] } });

  it("lists in pages, then follows additions and deletions, keeping only what it projects", async () => {
    for (let i = 0; i < 5; i++) await core.createNode({ body: node(i) });
    const seen: Array<{ reason: string; nodes: Map<string, string> }> = [];
    const watch = new NodeWatch<string>({
      kubeConfig: api.adminClient,
      logger: createLogger({ component: "test", level: "silent" }),
      pageSize: 2,
      project: (n) => n.spec?.podCIDR ?? "",
      onChange: (nodes, reason) => seen.push({ reason, nodes: new Map(nodes) }),
    });
    const last = async (pred: (nodes: Map<string, string>) => boolean) => {
      await expect.poll(() => seen.some((s) => pred(s.nodes)), { timeout: 20_000 }).toBe(true);
      return seen.at(-1);
    };
    watch.start();
    try {
      const listed = await last((nodes) => nodes.size === 5);
      // Five nodes at two per page: one list (three requests) reported once, complete.
      expect(seen.filter((s) => s.reason === "list").map((s) => s.nodes.size)).toEqual([5]);
      expect(listed?.nodes.get("watched-3")).toBe("10.3.0.0/24");
      expect(watch.synced).toBe(true);

      await core.createNode({ body: node(5) });
      expect((await last((nodes) => nodes.has("watched-5")))?.reason).toBe("added");
      await core.deleteNode({ name: "watched-0" });
      const after = await last((nodes) => !nodes.has("watched-0"));
      expect(after?.reason).toBe("deleted");
      expect([...(after?.nodes.keys() ?? [])].sort()).toEqual(["watched-1", "watched-2", "watched-3", "watched-4", "watched-5"]);
    } finally {
      await watch.stop();
    }
  });
});
