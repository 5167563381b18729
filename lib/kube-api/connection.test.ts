import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { inCluster, KubeConfigError, loadKubeConnection } from "./connection.js";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "cloak-kubeconfig-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const kubeconfig = (user: Record<string, unknown>, cluster: Record<string, unknown> = { server: "https://127.0.0.1:6443", "certificate-authority": "ca.crt" }) =>
  stringify({
    apiVersion: "v1",
    kind: "Config",
    clusters: [{ name: "c", cluster }],
    users: [{ name: "u", user }],
    contexts: [{ name: "x", context: { cluster: "c", user: "u" } }],
    "current-context": "x",
  });

describe("API server connections", () => {
  it("reads a kubeconfig with inline certificates, or files relative to it", async () => {
    await writeFile(join(dir, "ca.crt"), "CA");
    await writeFile(join(dir, "k1"), kubeconfig({ "client-certificate-data": Buffer.from("CERT").toString("base64"), "client-key": "key.pem" }));
    await writeFile(join(dir, "key.pem"), "KEY");
    const c = await loadKubeConnection({ kubeconfig: join(dir, "k1") });
    expect(c.server.href).toBe("https://127.0.0.1:6443/");
    expect(c.ca?.toString()).toBe("CA");
    expect(c.cert?.toString()).toBe("CERT");
    expect(c.key?.toString()).toBe("KEY");
    expect(await c.token()).toBeUndefined();
  });

  it("takes $KUBECONFIG and a token or token file", async () => {
    await writeFile(join(dir, "ca.crt"), "CA");
    await writeFile(join(dir, "k2"), kubeconfig({ tokenFile: "tok" }));
    await writeFile(join(dir, "tok"), "abc\n");
    const c = await loadKubeConnection({ env: { KUBECONFIG: join(dir, "k2") } });
    expect(await c.token()).toBe("abc");
    await writeFile(join(dir, "k3"), kubeconfig({ token: "inline" }));
    expect(await (await loadKubeConnection({ kubeconfig: join(dir, "k3") })).token()).toBe("inline");
  });

  it("refuses what it cannot do, naming the file", async () => {
    await writeFile(join(dir, "k4"), kubeconfig({ exec: { command: "aws" } }));
    await expect(loadKubeConnection({ kubeconfig: join(dir, "k4") })).rejects.toThrow(/k4: user credentials of type "exec" are not supported/);
    await expect(loadKubeConnection({ env: {} })).rejects.toThrow(KubeConfigError);
  });

  it("uses the pod's service account in a cluster, re-reading the rotated token", async () => {
    await writeFile(join(dir, "ca.crt"), "CA");
    await writeFile(join(dir, "token"), "t1");
    const c = await inCluster("fd00::1", "443", dir);
    expect(c.server.host).toBe("[fd00::1]");
    expect(await c.token()).toBe("t1");
  });
});
