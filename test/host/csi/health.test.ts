import { mkdtemp, rm, unlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startKeyServiceHarness, type KeyServiceHarness } from "../../keyservice-harness/index.js";
import { createKeyDir } from "../../support/key-dir.js";
import { HEALTH_ARGS, healthPort, httpGet, metricValue } from "../../support/csi-health.js";
import { startPlugin, type RunningPlugin } from "../../support/csi-plugin.js";
import { waitFor } from "../../support/wait.js";
import { scrubTree } from "../../support/scrub.js";

// The plugin's own health endpoint, which replaces the livenessprobe sidecar: liveness is "the
// gRPC server answers", readiness adds the key source, and a key service outage — real key
// service, real mutual TLS, stopped and started — must never fail liveness or Probe (issue 16:
// it restarted the plugin on every node at once). Metrics come from the same port.

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "cloak-host-health-"));
});
afterAll(async () => {
  await scrubTree(root);
  await rm(root, { recursive: true, force: true });
});

describe("a key service outage", () => {
  let ks: KeyServiceHarness;
  let plugin: RunningPlugin;
  let port: number;
  beforeAll(async () => {
    ks = await startKeyServiceHarness({ dir: join(root, "keyservice") });
    plugin = await startPlugin({
      dir: await mkdtemp(join(root, "ks-")),
      args: [
        ...HEALTH_ARGS,
        "--key-source-probe-interval", "0.5",
        "--keyservice", ks.target,
        "--keyservice-server-name", ks.serverName,
        "--keyservice-ca", ks.client.caFile,
        "--keyservice-cert", ks.client.certFile,
        "--keyservice-key", ks.client.keyFile,
      ],
    });
    port = await healthPort(plugin);
  }, 120_000);
  afterAll(async () => {
    await plugin?.stop("SIGKILL");
    await ks?.cleanup();
  });

  it("is ready while the key service answers", async () => {
    const ready = await waitFor("/readyz 200", async () => {
      const r = await httpGet(port, "/readyz");
      return r.status === 200 && r;
    }, 30_000);
    expect(ready.body).toContain("[+]key-source ok");
    expect(ready.body).toContain("[+]csi-probe ok");
    expect(metricValue((await httpGet(port, "/metrics")).body, "cloak_csi_key_source_ready")).toBe(1);
  });

  it("stays live and Probe-ready while the key service is down, and says it is not ready", async () => {
    await ks.stop();
    const notReady = await waitFor("/readyz 503", async () => {
      const r = await httpGet(port, "/readyz");
      return r.status === 503 && r;
    }, 30_000);
    expect(notReady.body).toMatch(/\[-\]key-source failed: keyservice key source: .*key service/);
    expect(notReady.body).toContain("[+]csi-probe ok");

    const live = await httpGet(port, "/healthz");
    expect(live).toEqual({ status: 200, body: "[+]grpc ok\nok\n" });
    // What the livenessprobe sidecar turns into liveness: it must stay ready.
    expect((await plugin.client.identity("Probe", {})).ready?.value).toBe(true);
    expect(metricValue((await httpGet(port, "/metrics")).body, "cloak_csi_key_source_ready")).toBe(0);

    // Several probes failed by now (one every 0.5 s); the log says so once.
    await new Promise((r) => setTimeout(r, 2_000));
    const down = plugin.logs.filter((l) => l["msg"]?.toString().startsWith("key source not ready"));
    expect(down).toHaveLength(1);
    expect(down[0]).toMatchObject({ level: 40, keySource: "keyservice", err: expect.stringMatching(/key service/) });
  });

  it("is ready again once the key service is back", async () => {
    await ks.start();
    await waitFor("/readyz 200 again", async () => (await httpGet(port, "/readyz")).status === 200, 60_000);
    expect(metricValue((await httpGet(port, "/metrics")).body, "cloak_csi_key_source_ready")).toBe(1);
    const back = await waitFor("the line saying so", async () => plugin.logs.find((l) => l["msg"] === "key source ready" && l["downMs"] !== undefined), 10_000);
    expect(back["downMs"]).toBeGreaterThan(0);
  });
});

describe("the health endpoint and metrics", () => {
  let plugin: RunningPlugin;
  let port: number;
  beforeAll(async () => {
    plugin = await startPlugin({ dir: await mkdtemp(join(root, "m-")), keyDir: await createKeyDir(join(root, "keys")), args: [...HEALTH_ARGS] });
    port = await healthPort(plugin);
  }, 120_000);
  afterAll(async () => {
    await plugin?.stop("SIGKILL");
  });

  it("logs the version first", () => {
    expect(plugin.logs[0]).toMatchObject({ msg: "starting cloak csi", version: expect.stringMatching(/^\d+\.\d+\.\d+/), node: process.version });
  });

  it("counts every call by method and status code, with latency and what is in flight", async () => {
    await plugin.client.identity("GetPluginInfo", {});
    await expect(
      plugin.client.node("NodeStageVolume", { volume_id: "", staging_target_path: join(plugin.kubeletDir, "s"), volume_capability: { mount: {}, access_mode: { mode: "SINGLE_NODE_WRITER" } } }),
    ).rejects.toMatchObject({ code: status.INVALID_ARGUMENT });
    await expect(plugin.client.controller("ControllerPublishVolume", { volume_id: "v", node_id: "n" })).rejects.toMatchObject({ code: status.UNIMPLEMENTED });

    const metrics = await httpGet(port, "/metrics");
    expect(metrics.status).toBe(200);
    const m = (name: string, labels?: Record<string, string>) => metricValue(metrics.body, name, labels);
    expect(m("cloak_csi_requests_total", { method: "csi.v1.Node/NodeStageVolume", code: "INVALID_ARGUMENT" })).toBe(1);
    expect(m("cloak_csi_requests_total", { method: "csi.v1.Controller/ControllerPublishVolume", code: "UNIMPLEMENTED" })).toBe(1);
    expect(m("cloak_csi_requests_total", { method: "csi.v1.Identity/GetPluginInfo", code: "OK" })).toBeGreaterThanOrEqual(1);
    expect(m("cloak_csi_request_duration_seconds_count", { method: "csi.v1.Node/NodeStageVolume" })).toBe(1);
    expect(m("cloak_csi_requests_in_flight", { method: "csi.v1.Node/NodeStageVolume" })).toBe(0);
    expect(m("cloak_csi_requests_in_flight", { method: "csi.v1.Node/NodeUnstageVolume" })).toBe(0);
    expect(m("cloak_csi_volumes_staged")).toBe(0);
    expect(m("cloak_csi_records_quarantined_total")).toBeUndefined();
    expect(m("cloak_build_info", { component: "csi", node_version: process.version })).toBe(1);
    expect(metrics.body).toMatch(/^cloak_build_info\{component="csi",version="\d+\.\d+\.\d+[^"]*",node_version="v\d+/m);
    expect(m("cloak_csi_process_resident_memory_bytes")).toBeGreaterThan(0);
  });

  it("logs kubelet's probes of it at debug only, other calls at info", async () => {
    const before = plugin.logs.length;
    expect((await httpGet(port, "/healthz")).status).toBe(200);
    expect((await httpGet(port, "/readyz")).status).toBe(200);
    await plugin.client.identity("GetPluginInfo", {});
    // Lines arrive through the child's stdout, a little after the answers.
    const calls = await waitFor("the call lines", async () => {
      const lines = plugin.logs.slice(before).filter((l) => l["msg"] === "call");
      return lines.some((l) => l["level"] === 30) && lines.length >= 3 && lines;
    }, 10_000);
    expect(calls.map((l) => [l["method"], l["level"]])).toEqual(
      expect.arrayContaining([
        ["csi.v1.Identity/GetPluginInfo", 20],
        ["csi.v1.Identity/Probe", 20],
        ["csi.v1.Identity/GetPluginInfo", 30],
      ]),
    );
    expect(calls.filter((l) => l["level"] === 30)).toHaveLength(1);
  });

  it("answers only GET and HEAD, and 404 elsewhere", async () => {
    expect((await httpGet(port, "/nothing")).status).toBe(404);
    const post = await fetch(`http://127.0.0.1:${port}/healthz`, { method: "POST" });
    expect(post.status).toBe(405);
  });

  it("fails liveness when its gRPC server can no longer be reached (what a restart cures)", async () => {
    expect((await httpGet(port, "/healthz")).status).toBe(200);
    await unlink(plugin.socket);
    const dead = await httpGet(port, "/healthz");
    expect(dead.status).toBe(503);
    expect(dead.body).toMatch(/^\[-\]grpc failed: GetPluginInfo on unix:\/\/.*csi\.sock/);
    expect((await httpGet(port, "/readyz")).status).toBe(503);
  });
});
