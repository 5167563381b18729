import { X509Certificate } from "node:crypto";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { readKeyMaterial } from "../lib/data-key.js";
import { loadTlsMaterial } from "../lib/tls-files.js";
import { keysInit, keysIssue, parseInitArgs, parseIssueArgs, parseNamedClient, serverDnsNames } from "./keys.js";

let dir: string;
beforeEach(async () => {
  dir = join(await mkdtemp(join(tmpdir(), "cloak-ks-keys-")), "keys");
});
afterEach(async () => {
  await rm(join(dir, ".."), { recursive: true, force: true });
});

const modeOf = async (path: string): Promise<number> => (await stat(path)).mode & 0o777;
const cert = async (path: string): Promise<X509Certificate> => new X509Certificate(await readFile(path));

describe("cloak keys init", () => {
  it("writes secrets, CA, server and client certificates with private modes", async () => {
    const written = await keysInit(parseInitArgs([dir, "--client", "spiffe://cloak/ns/cloak-system/sa/cloak-csi-node", "--client", "ops=ops.example", "--ip", "10.0.0.9"]));
    expect(written.identities).toEqual(["spiffe://cloak/ns/cloak-system/sa/cloak-csi-node", "ops.example"]);
    expect(await modeOf(dir)).toBe(0o700);
    for (const secret of ["master-secret", "salt", "ca/ca.key", "server/tls.key", "clients/cloak-csi-node/tls.key", "clients/ops/tls.key"]) {
      expect(await modeOf(join(dir, secret)), secret).toBe(0o400);
    }
    for (const sub of ["ca", "server", "clients", "clients/ops"]) expect(await modeOf(join(dir, sub)), sub).toBe(0o700);
    // The key service's own startup checks accept what init wrote.
    expect(await readKeyMaterial(join(dir, "master-secret"), "master secret")).toHaveLength(32);
    const salt = await readKeyMaterial(join(dir, "salt"), "salt");
    expect(salt.equals(await readKeyMaterial(join(dir, "master-secret"), "m"))).toBe(false);
    await loadTlsMaterial({ certFile: join(dir, "server/tls.crt"), keyFile: join(dir, "server/tls.key"), caFile: join(dir, "server/ca.crt") });

    const ca = await cert(join(dir, "ca/ca.crt"));
    expect(ca.ca).toBe(true);
    const server = await cert(join(dir, "server/tls.crt"));
    expect(server.verify(ca.publicKey)).toBe(true);
    expect(server.ca).toBe(false);
    expect(server.checkHost("cloak-keyservice.cloak-system.svc")).toBe("cloak-keyservice.cloak-system.svc");
    expect(server.checkIP("10.0.0.9")).toBe("10.0.0.9");
    expect(server.keyUsage).toEqual(["1.3.6.1.5.5.7.3.1"]);
    const client = await cert(join(dir, "clients/cloak-csi-node/tls.crt"));
    expect(client.verify(ca.publicKey)).toBe(true);
    expect(client.subjectAltName).toBe("URI:spiffe://cloak/ns/cloak-system/sa/cloak-csi-node");
    expect(client.keyUsage).toEqual(["1.3.6.1.5.5.7.3.2"]);
    expect((await cert(join(dir, "clients/ops/tls.crt"))).subjectAltName).toBe("DNS:ops.example");
  });

  it("refuses to replace a master secret unless told to, and then replaces it", async () => {
    await keysInit(parseInitArgs([dir]));
    const before = await readFile(join(dir, "master-secret"));
    await expect(keysInit(parseInitArgs([dir]))).rejects.toThrow(/master-secret exists.*--overwrite-master-secret/s);
    expect((await readFile(join(dir, "master-secret"))).equals(before)).toBe(true);
    await keysInit(parseInitArgs([dir, "--overwrite-master-secret"]));
    expect((await readFile(join(dir, "master-secret"))).equals(before)).toBe(false);
    expect(await modeOf(join(dir, "master-secret"))).toBe(0o400);
  });

  it("issue renews the server certificate and adds clients with the same CA, keeping the secrets", async () => {
    await keysInit(parseInitArgs([dir]));
    const secret = await readFile(join(dir, "master-secret"));
    const oldServer = await cert(join(dir, "server/tls.crt"));
    await keysIssue(parseIssueArgs([dir, "--server", "--days", "2"]));
    const newServer = await cert(join(dir, "server/tls.crt"));
    expect(newServer.serialNumber).not.toBe(oldServer.serialNumber);
    expect(newServer.verify((await cert(join(dir, "ca/ca.crt"))).publicKey)).toBe(true);
    expect(new Date(newServer.validTo).getTime() - Date.now()).toBeLessThan(3 * 86_400_000);
    await keysIssue(parseIssueArgs([dir, "--client", "node-7.nodes.example"]));
    expect((await cert(join(dir, "clients/node-7/tls.crt"))).subjectAltName).toBe("DNS:node-7.nodes.example");
    expect((await readFile(join(dir, "master-secret"))).equals(secret)).toBe(true);
  });

  it("checks its command line", () => {
    expect(() => parseInitArgs([])).toThrow(/exactly one directory/);
    expect(() => parseInitArgs([dir, "--days", "0"])).toThrow(/--days/);
    expect(() => parseInitArgs([dir, "--client", "a=x.example", "--client", "a=y.example"])).toThrow(/two clients are named a/);
    expect(() => parseIssueArgs([dir])).toThrow(/exactly one of --server or --client/);
    expect(() => parseNamedClient("not a name")).toThrow(/neither a URI/);
    expect(() => parseNamedClient("../x=a.example")).toThrow(/client name/);
    expect(parseNamedClient("spiffe://td/ns/a/sa/b")).toEqual({ name: "b", identity: { kind: "uri", value: "spiffe://td/ns/a/sa/b" } });
    expect(serverDnsNames({ service: "ks", namespace: "ns", extraDns: ["ks.example"], ips: [] })).toEqual([
      "ks",
      "ks.ns",
      "ks.ns.svc",
      "ks.ns.svc.cluster.local",
      "ks.example",
    ]);
  });
});
