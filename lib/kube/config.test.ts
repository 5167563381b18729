import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { KubeClient } from "./client.js";
import { inClusterConnection, KubeConfigError, kubeconfigConnection } from "./config.js";

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
    const c = await kubeconfigConnection(join(dir, "k1"));
    expect(c.server.href).toBe("https://127.0.0.1:6443/");
    expect(c.ca?.toString()).toBe("CA");
    expect(c.cert?.toString()).toBe("CERT");
    expect(c.key?.toString()).toBe("KEY");
    expect(await c.token()).toBeUndefined();
    expect(c.source).toBe(`kubeconfig ${join(dir, "k1")}`);
  });

  it("takes a token or a token file", async () => {
    await writeFile(join(dir, "ca.crt"), "CA");
    await writeFile(join(dir, "k2"), kubeconfig({ tokenFile: "tok" }));
    await writeFile(join(dir, "tok"), "abc\n");
    expect(await (await kubeconfigConnection(join(dir, "k2"))).token()).toBe("abc");
    await writeFile(join(dir, "k3"), kubeconfig({ token: "inline" }));
    expect(await (await kubeconfigConnection(join(dir, "k3"))).token()).toBe("inline");
  });

  it("connects through the flag, else the first file of $KUBECONFIG, else in-cluster", async () => {
    await writeFile(join(dir, "ca.crt"), "CA");
    await writeFile(join(dir, "k5"), kubeconfig({ token: "t" }, { server: "https://flag.example:6443", "certificate-authority": "ca.crt" }));
    await writeFile(join(dir, "k6"), kubeconfig({ token: "t" }, { server: "https://env.example:6443", "certificate-authority": "ca.crt" }));
    const env = { KUBECONFIG: `${join(dir, "k6")}:${join(dir, "k5")}` };
    const servers: string[] = [];
    for (const flag of [join(dir, "k5"), undefined]) {
      const client = await KubeClient.connect(flag, "test", env);
      servers.push(client.server);
      client.close();
    }
    expect(servers).toEqual(["https://flag.example:6443/", "https://env.example:6443/"]);
    await expect(KubeClient.connect(undefined, "test", {})).rejects.toThrow(/not in a cluster/);
  });

  it("refuses what it cannot do, naming the file", async () => {
    await writeFile(join(dir, "k4"), kubeconfig({ exec: { command: "aws" } }));
    await expect(kubeconfigConnection(join(dir, "k4"))).rejects.toThrow(/k4: user u: exec credentials are not supported/);
    await expect(inClusterConnection({}, dir)).rejects.toThrow(KubeConfigError);
  });

  it("uses the pod's service account in a cluster", async () => {
    await writeFile(join(dir, "ca.crt"), "CA");
    await writeFile(join(dir, "token"), "t1");
    const c = await inClusterConnection({ KUBERNETES_SERVICE_HOST: "fd00::1", KUBERNETES_SERVICE_PORT: "443" }, dir);
    expect(c.server.host).toBe("[fd00::1]");
    expect(await c.token()).toBe("t1");
    expect(c.source).toBe("in-cluster");
  });
});
