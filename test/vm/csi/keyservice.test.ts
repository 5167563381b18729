import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startKeyServiceHarness, type KeyServiceHarness } from "../../keyservice-harness/index.js";
import { CsiFixture, mountCapability } from "./fixture.js";

// The node plugin with its production key source: the key service over mutual TLS, both real
// processes. Volumes are staged with keys from the service; when the service goes away,
// staging fails with Unavailable (kubelet retries) while staged volumes keep working.

const fx = new CsiFixture();
let ks: KeyServiceHarness;

beforeAll(async () => {
  await fx.setUp();
  // Under the VM's emulated CPU the service takes far longer to start than on a host.
  ks = await startKeyServiceHarness({ dir: join(fx.root, "keyservice"), startTimeoutMs: 180_000 });
  await fx.restart({
    keyDir: undefined,
    args: [
      "--keyservice", ks.target,
      "--keyservice-server-name", ks.serverName,
      "--keyservice-ca", ks.client.caFile,
      "--keyservice-cert", ks.client.certFile,
      "--keyservice-key", ks.client.keyFile,
    ],
  });
});
afterAll(async () => {
  await ks?.cleanup();
  await fx.tearDown();
});

describe("the node plugin with the key service", () => {
  it("stages a volume with a key from the service, which audits the request", async () => {
    await fx.newVolume("vol-ks-1");
    await fx.stage("vol-ks-1");
    const target = await fx.publish("vol-ks-1");
    await writeFile(join(target, "data"), "keyed by the service");
    const uuid = await fx.luksUuid("vol-ks-1");
    // Audit lines are written in batches: wait for this one.
    await expect
      .poll(() => ks.logLines().find((l) => l["msg"] === "GetDataKey" && l["data_key_id"] === uuid), { timeout: 10_000 })
      .toMatchObject({ result: "OK", client: expect.any(String) });
  });

  it("fails a stage with Unavailable while the service is down, and staged volumes keep working", async () => {
    await ks.stop();
    await fx.newVolume("vol-ks-2");
    await expect(fx.stage("vol-ks-2")).rejects.toMatchObject({
      code: status.UNAVAILABLE,
      details: expect.stringMatching(/key service/i),
    });
    const target = fx.targetPath("vol-ks-1");
    await writeFile(join(target, "while-down"), "still writable");
    expect(await readFile(join(target, "data"), "utf8")).toBe("keyed by the service");
    // Probe stays ready: an outage of the key service is readiness (/readyz), never liveness,
    // which the livenessprobe sidecar derives from Probe (issue 16; test/host/csi/health.test.ts).
    const probe = await fx.plugin.client.identity("Probe", {});
    expect(probe.ready?.value).toBe(true);
  });

  it("stages again once the service is back, on the same long-lived channel", async () => {
    await ks.start();
    await fx.stage("vol-ks-2");
    await fx.publish("vol-ks-2", mountCapability());
    expect((await fx.plugin.client.identity("Probe", {})).ready?.value).toBe(true);
    for (const id of ["vol-ks-1", "vol-ks-2"]) {
      await fx.unpublish(id);
      await fx.unstage(id);
    }
    // Re-staging needs the key again: the same key id gives the same key.
    await fx.stage("vol-ks-1");
    expect(await readFile(join(await fx.publish("vol-ks-1"), "while-down"), "utf8")).toBe("still writable");
    await fx.unpublish("vol-ks-1");
    await fx.unstage("vol-ks-1");
  });
});
