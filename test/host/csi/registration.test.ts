import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm, unlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createRunner } from "../../../lib/exec.js";
import { createLogger } from "../../../lib/log.js";
import { packageRoot } from "../../../lib/paths.js";
import { HEALTH_ARGS, healthPort, httpGet, metricValue } from "../../support/csi-health.js";
import { startPlugin, type RunningPlugin } from "../../support/csi-plugin.js";
import { followJsonLines } from "../../support/json-lines.js";
import { createKeyDir } from "../../support/key-dir.js";
import { scrubTree } from "../../support/scrub.js";
import { waitFor } from "../../support/wait.js";

// Registration with kubelet, built into `cloak csi` (no node-driver-registrar), against
// kubelet's own code: test/pluginwatcher runs kubelet's plugin manager (the plugins_registry
// watcher, reconciler and operation executor that call GetInfo and NotifyRegistrationStatus)
// with kubelet's CSI version validation, then calls NodeGetInfo on the endpoint the plugin
// reported. The VM cluster tier does the same with a whole kubelet.

const DRIVER = "csi.cloak.dev";
let root: string;
let keyDir: string;
let watcherBinary: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "cloak-host-registration-"));
  keyDir = await createKeyDir(join(root, "keys"));
  const run = createRunner({ logger: createLogger({ component: "test", level: "warn" }) });
  // A no-op when cached (make test-host builds it first); a first build takes minutes.
  watcherBinary = (await run({ file: join(packageRoot(), "test/pluginwatcher/build.sh"), args: [], timeoutMs: 1_500_000 })).stdout.trim();
}, 1_500_000);
afterAll(async () => {
  await scrubTree(root);
  await rm(root, { recursive: true, force: true });
});

/** kubelet's plugin manager watching `dir`, its events as JSON lines. */
class PluginWatcher {
  readonly events: Record<string, unknown>[] = [];
  private readonly child: ChildProcess;
  private stderr = "";
  private readonly exited: Promise<void>;

  constructor(dir: string, args: readonly string[] = []) {
    this.child = spawn(watcherBinary, ["--plugins-dir", dir, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    followJsonLines(this.child.stdout as NonNullable<ChildProcess["stdout"]>, { text: () => undefined, json: (e) => this.events.push(e) });
    this.child.stderr?.setEncoding("utf8").on("data", (c: string) => (this.stderr += c));
    this.exited = new Promise((resolve) => this.child.once("exit", () => resolve()));
  }

  async started(): Promise<void> {
    await this.event("watching");
  }

  /** The n-th (0-based) event of a kind. */
  event(kind: string, nth = 0): Promise<Record<string, unknown>> {
    return waitFor(
      () => `kubelet's plugin manager to ${kind} (events: ${JSON.stringify(this.events)}; klog: ${this.stderr.slice(-2000)})`,
      async () => this.events.filter((e) => e["event"] === kind)[nth],
      60_000,
    );
  }

  async stop(): Promise<void> {
    this.child.kill("SIGTERM");
    await this.exited;
  }
}

describe("registration with kubelet's plugin manager", () => {
  let plugin: RunningPlugin | undefined;
  let watcher: PluginWatcher | undefined;
  afterEach(async () => {
    await plugin?.stop("SIGKILL");
    await watcher?.stop();
    plugin = undefined;
    watcher = undefined;
  });

  async function start(watcherArgs: readonly string[] = []): Promise<{ registry: string; port: number; plugin: RunningPlugin; watcher: PluginWatcher }> {
    const dir = await mkdtemp(join(root, "r-"));
    const registry = join(dir, "plugins_registry");
    await mkdir(registry);
    watcher = new PluginWatcher(registry, watcherArgs);
    await watcher.started();
    // The endpoint kubelet is told is the socket itself here: kubelet and the plugin share a
    // filesystem view in this test, as they do on a node through the hostPath.
    plugin = await startPlugin({
      dir,
      keyDir,
      args: [...HEALTH_ARGS, "--registration-dir", registry, "--kubelet-endpoint", join(dir, "csi.sock"), "--driver-name", DRIVER],
    });
    return { registry, port: await healthPort(plugin), plugin, watcher };
  }

  it("is registered as the CSI driver, with the node id and topology kubelet reads from NodeGetInfo", async () => {
    const { registry, port, plugin, watcher } = await start();
    expect(existsSync(join(registry, `${DRIVER}-reg.sock`))).toBe(true);
    const validated = await watcher.event("validate");
    expect(validated).toMatchObject({ name: DRIVER, endpoint: plugin.socket, versions: ["1.0.0"] });
    expect(validated["error"]).toBeUndefined();
    expect(await watcher.event("register")).toMatchObject({
      name: DRIVER,
      endpoint: plugin.socket,
      nodeId: "test-node",
      topology: { "topology.csi.cloak.dev/node": "test-node" },
    });

    await waitFor("the plugin to hear it is registered", async () => plugin.logs.find((l) => l["msg"] === "kubelet registered the plugin"), 30_000);
    const ready = await httpGet(port, "/readyz");
    expect(ready.status).toBe(200);
    expect(ready.body).toContain("[+]kubelet-registration ok");
    const metrics = (await httpGet(port, "/metrics")).body;
    expect(metricValue(metrics, "cloak_csi_kubelet_registered")).toBe(1);
    expect(metricValue(metrics, "cloak_csi_kubelet_registration_reports_total", { registered: "true" })).toBe(1);
    expect(metricValue(metrics, "cloak_csi_requests_total", { method: "pluginregistration.Registration/GetInfo", code: "OK" })).toBe(1);
  });

  it("logs and exposes a refusal, then offers itself again and is registered", async () => {
    const { port, plugin, watcher } = await start(["--reject", "the node has no room for another driver", "--reject-times", "1"]);
    await watcher.event("rejected");
    const refused = await waitFor("the refusal in the log", async () => plugin.logs.find((l) => l["msg"] === "kubelet refused the registration"), 30_000);
    expect(refused).toMatchObject({ level: 50, driver: DRIVER, err: expect.stringContaining("the node has no room for another driver") });
    const notReady = await httpGet(port, "/readyz");
    expect(notReady.status).toBe(503);
    expect(notReady.body).toMatch(/\[-\]kubelet-registration failed: kubelet refused the registration: .*no room/);
    const metrics = (await httpGet(port, "/metrics")).body;
    expect(metricValue(metrics, "cloak_csi_kubelet_registered")).toBe(0);
    expect(metricValue(metrics, "cloak_csi_kubelet_registration_reports_total", { registered: "false" })).toBe(1);
    // Liveness is the gRPC server's, not kubelet's.
    expect((await httpGet(port, "/healthz")).status).toBe(200);

    // kubelet does not retry a failed registration itself; the plugin re-offers its socket
    // (10 s later), which kubelet's watcher sees as a plugin that went away and came back.
    expect(await watcher.event("deregister")).toMatchObject({ name: DRIVER });
    expect(await watcher.event("register")).toMatchObject({ name: DRIVER, nodeId: "test-node" });
    await waitFor("/readyz 200 after the retry", async () => (await httpGet(port, "/readyz")).status === 200, 30_000);
  });

  it("offers a new socket when its socket is removed from under it", async () => {
    const { registry, port, watcher } = await start();
    await watcher.event("register");
    await unlink(join(registry, `${DRIVER}-reg.sock`));
    await watcher.event("deregister");
    // The readiness check notices and serves the socket again; kubelet registers it again.
    expect((await httpGet(port, "/readyz")).status).toBe(503);
    expect(await watcher.event("register", 1)).toMatchObject({ name: DRIVER });
    await waitFor("/readyz 200 after the new socket", async () => (await httpGet(port, "/readyz")).status === 200, 30_000);
  });

  it("removes its registration socket when it stops, and kubelet deregisters the driver", async () => {
    const { registry, plugin: running, watcher } = await start();
    await watcher.event("register");
    expect(await running.stop("SIGTERM")).toEqual({ code: 0, signal: null });
    plugin = undefined;
    expect(existsSync(join(registry, `${DRIVER}-reg.sock`))).toBe(false);
    expect(await watcher.event("deregister")).toMatchObject({ name: DRIVER });
  });
});
