import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { request } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CoreV1Api, PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseEnvelope } from "../../../keyservice/kek/envelope.js";
import { createKmsV2Backend } from "../../../keyservice/kek/kmsv2.js";
import { secretStore } from "../../../keyservice/kek/secret-store.js";
import { unwrapSecret } from "../../../keyservice/kek/wrap.js";
import { startApiServer, type ApiServer } from "../../apiserver/apiserver.js";
import { runCloak } from "../../keyservice-harness/index.js";
import { startKmsPlugin, type KmsPlugin } from "../../kms-plugin/harness.js";

// The KMS v2 plugin the key service tests use is a real one: the real kube-apiserver (v1.34,
// test/apiserver) encrypts Secrets in etcd with it and reads them back. The same API server
// then holds the key service's Secret while `cloak keys wrap --secret` and `rewrap --secret`
// (what the manifests' rewrap Job runs) work on it.

const PROVIDER = "cloak-test-kms";
const CLUSTER = "cloak-apiserver-test";
let base: string;
let kms: KmsPlugin;
let api: ApiServer;
let core: CoreV1Api;

beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), "cloak-kms-api-"));
  kms = await startKmsPlugin();
  api = await startApiServer({
    dir: join(base, "api"),
    encryptionConfig: {
      apiVersion: "apiserver.config.k8s.io/v1",
      kind: "EncryptionConfiguration",
      resources: [{ resources: ["secrets"], providers: [{ kms: { apiVersion: "v2", name: PROVIDER, endpoint: kms.endpoint, timeout: "5s" } }, { identity: {} }] }],
    },
  });
  core = api.adminClient.makeApiClient(CoreV1Api);
}, 300_000);

afterAll(async () => {
  await api?.stop();
  await kms?.cleanup();
  if (base) await rm(base, { recursive: true, force: true });
});

/** The value etcd holds for `key`, as stored (etcd's JSON gateway over mutual TLS). */
async function etcdValue(key: string): Promise<Buffer> {
  const body = JSON.stringify({ key: Buffer.from(key).toString("base64") });
  const url = new URL("/v3/kv/range", api.etcd.url);
  const [ca, cert, clientKey] = await Promise.all([api.etcd.caFile, api.etcd.certFile, api.etcd.keyFile].map((f) => readFile(f)));
  const text = await new Promise<string>((resolve, reject) => {
    const req = request(
      {
        method: "POST",
        hostname: url.hostname,
        port: url.port,
        path: url.pathname,
        ca,
        cert,
        key: clientKey,
        timeout: 10_000,
      },
      (res) => {
        let out = "";
        res.setEncoding("utf8").on("data", (c: string) => (out += c));
        res.on("end", () => (res.statusCode === 200 ? resolve(out) : reject(new Error(`etcd ${res.statusCode}: ${out}`))));
      },
    );
    req.on("error", reject);
    req.end(body);
  });
  const kvs = (JSON.parse(text) as { kvs?: { value: string }[] }).kvs ?? [];
  if (kvs.length !== 1) throw new Error(`etcd holds ${kvs.length} values for ${key}`);
  return Buffer.from(kvs[0]?.value ?? "", "base64");
}

describe("the KMS v2 test plugin under the real kube-apiserver", () => {
  it("encrypts Secrets in etcd (k8s:enc:kms:v2) and the API server reads them back", async () => {
    const payload = `payload-${randomBytes(8).toString("hex")}`;
    await core.createNamespacedSecret({ namespace: "default", body: { metadata: { name: "kms-probe" }, stringData: { payload } } });
    const stored = await etcdValue("/registry/secrets/default/kms-probe");
    expect(stored.subarray(0, 64).toString("latin1")).toMatch(new RegExp(`^k8s:enc:kms:v2:${PROVIDER}:`));
    expect(stored.includes(Buffer.from(payload))).toBe(false);
    const back = await core.readNamespacedSecret({ namespace: "default", name: "kms-probe" });
    expect(Buffer.from(back.data?.["payload"] ?? "", "base64").toString()).toBe(payload);
  });
});

describe("cloak keys wrap and rewrap on the key service's Secret", () => {
  it("replaces the plain master secret by the wrapped one, then rewraps it after a rotation, same secret throughout", async () => {
    const master = randomBytes(32);
    const salt = randomBytes(32);
    await core.createNamespace({ body: { metadata: { name: "cloak-system" } } });
    const ref = "cloak-system/cloak-keyservice-keys";
    await core.createNamespacedSecret({
      namespace: "cloak-system",
      body: { metadata: { name: "cloak-keyservice-keys" }, data: { "master-secret": master.toString("base64"), salt: salt.toString("base64") } },
    });
    const flags = ["--kms", kms.endpoint, "--cluster-id", CLUSTER, "--kubeconfig", api.kubeconfigPath];
    // rewrap refuses a Secret that has nothing wrapped yet.
    await expect(runCloak(["keys", "rewrap", "--secret", ref, ...flags])).rejects.toThrow(/holds no master-secret.wrapped; wrap the master secret first/);

    expect(await runCloak(["keys", "wrap", "--secret", ref, ...flags])).toMatch(/the Secret now holds master-secret.wrapped and no plain master-secret/);
    const read = async () => (await core.readNamespacedSecret({ namespace: "cloak-system", name: "cloak-keyservice-keys" })).data ?? {};
    let data = await read();
    expect(Object.keys(data).sort()).toEqual(["master-secret.wrapped", "salt"]);
    expect(data["salt"]).toBe(salt.toString("base64"));
    const first = parseEnvelope(Buffer.from(data["master-secret.wrapped"] ?? "", "base64").toString(), "secret");
    expect(first.keyId).toBe("kek-1");
    // What the API serves (decrypted from etcd) holds nothing of the secret: the blob is
    // ciphertext. (etcd itself holds the Secret encrypted by the API server's KMS provider.)
    expect(Buffer.from(data["master-secret.wrapped"] ?? "", "base64").includes(master)).toBe(false);
    expect((await etcdValue("/registry/secrets/cloak-system/cloak-keyservice-keys")).includes(master)).toBe(false);

    await kms.rotate("kek-2");
    expect(await runCloak(["keys", "rewrap", "--secret", ref, ...flags])).toMatch(/rewrapped the master secret from KMS key kek-1 to kek-2/);
    data = await read();
    expect(Object.keys(data).sort()).toEqual(["master-secret.wrapped", "salt"]);
    const second = parseEnvelope(Buffer.from(data["master-secret.wrapped"] ?? "", "base64").toString(), "secret");
    expect(second.keyId).toBe("kek-2");

    const backend = createKmsV2Backend({ endpoint: kms.endpoint });
    try {
      const context = { purpose: "master-secret", clusterId: CLUSTER };
      expect((await unwrapSecret(backend, context, second)).equals(master)).toBe(true);
      expect((await unwrapSecret(backend, context, first)).equals(master)).toBe(true);
    } finally {
      backend.close();
    }
    // A rewrap that read the Secret before someone else changed it writes nothing.
    const store = await secretStore(ref, api.kubeconfigPath);
    await core.patchNamespacedSecret(
      { namespace: "cloak-system", name: "cloak-keyservice-keys", body: { metadata: { labels: { touched: "yes" } } } },
      setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
    );
    await expect(store.write({ "master-secret.wrapped": Buffer.from("{}") })).rejects.toThrow(/changed meanwhile \(conflict\); nothing was written/);
    expect((await read())["master-secret.wrapped"]).toBe(data["master-secret.wrapped"]);

    // The API server's own Secrets survive the rotation of the key they were stored under.
    expect((await core.readNamespacedSecret({ namespace: "default", name: "kms-probe" })).data?.["payload"]).toBeDefined();
  });
});
