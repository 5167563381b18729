import { copyFile, mkdtemp, readFile, rename, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { KeySource } from "../../../csi/keys/key-source.js";
import { createKeyServiceKeySource } from "../../../csi/keys/keyservice-key-source.js";
import { deriveDataKey } from "../../../lib/data-key.js";
import { UnavailableError } from "../../../lib/errors.js";
import { createLogger } from "../../../lib/log.js";
import { createKmsV2Backend } from "../../../keyservice/kek/kmsv2.js";
import { parseEnvelope } from "../../../keyservice/kek/envelope.js";
import { unwrapSecret } from "../../../keyservice/kek/wrap.js";
import { initKeys, runCloak, startKeyServiceHarness, type KeyServiceHarness } from "../../keyservice-harness/index.js";
import { startKmsPlugin, type KmsPlugin } from "../../kms-plugin/harness.js";
import { metricValue } from "../../support/csi-health.js";
import { waitFor } from "../../support/wait.js";

// The key service with its master secret wrapped by a real KMS v2 plugin: Kubernetes' KMS v2
// service code over an AES key that never leaves a SoftHSM2 token (test/kms-plugin; the
// apiserver test shows kube-apiserver accepts the same plugin). Real processes throughout: the
// plugin, `cloak keys`, `cloak keyservice`, and the node plugin's own client over mTLS.

const CLUSTER = "cloak-test-cluster";
const IDS = ["0d7ad1a3-6c43-4d0f-9b4e-6f1d9d3a1c55", "vol-2", "vol-3"];
const logger = createLogger({ component: "test", level: "silent" });

let base: string;
let keysDir: string;
let kms: KmsPlugin;
/** The keys the plain master secret gives: what every volume made before wrapping has. */
let expected: Buffer[];
const services: KeyServiceHarness[] = [];
const clients: KeySource[] = [];

const kmsArgs = (dir = keysDir, clusterId = CLUSTER) => [
  "--kms",
  kms.endpoint,
  "--cluster-id",
  clusterId,
  "--wrapped-master-secret",
  join(dir, "master-secret.wrapped"),
];
// Short intervals so that each outcome shows within a second.
const FAST = ["--kms-status-interval-ms", "200", "--kms-recheck-interval-ms", "400", "--kms-timeout-ms", "1000"];

async function keyService(o: { dir?: string; clusterId?: string; awaitReady?: boolean } = {}): Promise<KeyServiceHarness> {
  const dir = o.dir ?? keysDir;
  const ks = await startKeyServiceHarness({
    dir: join(dir, ".."),
    masterSecretArgs: kmsArgs(dir, o.clusterId),
    extraArgs: FAST,
    ...(o.awaitReady === undefined ? {} : { awaitReady: o.awaitReady }),
  });
  services.push(ks);
  return ks;
}

async function client(ks: KeyServiceHarness): Promise<KeySource> {
  const c = await createKeyServiceKeySource({ target: ks.target, serverName: ks.serverName, ...ks.client, attempts: 1, callTimeoutMs: 2000, logger });
  clients.push(c);
  return c;
}

const keysOf = (c: KeySource) => Promise.all(IDS.map((id) => c.getKey(id, 32)));
const readyz = async (ks: KeyServiceHarness) => {
  const res = await fetch(`http://127.0.0.1:${ks.metricsPort()}/readyz`);
  return { status: res.status, body: await res.text() };
};
const metric = async (ks: KeyServiceHarness, name: string, labels?: Record<string, string>) =>
  metricValue(await (await fetch(`http://127.0.0.1:${ks.metricsPort()}/metrics`)).text(), name, labels);
const logged = (ks: KeyServiceHarness, msg: string | RegExp) => ks.logLines().filter((l) => (typeof msg === "string" ? l["msg"] === msg : msg.test(String(l["msg"]))));
/** Log lines are written in batches (every 200 ms): wait for one rather than look once. */
const waitLogged = (ks: KeyServiceHarness, msg: string | RegExp) =>
  waitFor(`log line ${String(msg)}`, () => Promise.resolve(logged(ks, msg)[0]), 5_000);

beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), "cloak-ks-kms-"));
  keysDir = join(base, "keys");
  kms = await startKmsPlugin();
  await initKeys(keysDir);
  const master = await readFile(join(keysDir, "master-secret"));
  const salt = await readFile(join(keysDir, "salt"));
  expected = IDS.map((id) => deriveDataKey(master, salt, id, 32));
  master.fill(0);
});

afterAll(async () => {
  for (const c of clients) await c.close();
  for (const s of services) await s.stop();
  await kms?.cleanup();
  if (base) await rm(base, { recursive: true, force: true });
});

async function stopAll(): Promise<void> {
  for (const c of clients.splice(0)) await c.close();
  for (const s of services.splice(0)) await s.stop();
}

// Each test starts with the plugin up and ends with no key service running, whatever happened.
beforeEach(() => kms.start());
afterEach(stopAll);

describe("the master secret wrapped by a KMS v2 plugin over an HSM", () => {
  it("keeps its key in the HSM: sensitive, never extractable, its value unreadable", async () => {
    const key = JSON.parse(await kms.token("inspect", "kek-1")) as Record<string, unknown>;
    expect(key).toMatchObject({ sensitive: true, extractable: false, alwaysSensitive: true, neverExtractable: true, encrypt: true, decrypt: true });
    expect(key["valueReadError"]).toMatch(/CKR_ATTRIBUTE_SENSITIVE/);
  });

  it("wraps an existing plain master secret; after a restart the service derives the same keys as before", async () => {
    const out = await runCloak(["keys", "wrap", keysDir, "--kms", kms.endpoint, "--cluster-id", CLUSTER]);
    expect(out).toMatch(/wrapped the master secret of .* under KMS key kek-1 \(cluster cloak-test-cluster\)/);
    const wrapped = await readFile(join(keysDir, "master-secret.wrapped"), "utf8");
    expect(parseEnvelope(wrapped, "f")).toMatchObject({ backend: "kmsv2", keyId: "kek-1" });
    expect((await stat(join(keysDir, "master-secret.wrapped"))).mode & 0o777).toBe(0o400);
    // Nothing of the secret in the blob: it is ciphertext under the HSM's key.
    const master = await readFile(join(keysDir, "master-secret"));
    expect(wrapped.includes(master.toString("base64"))).toBe(false);
    expect(Buffer.from(wrapped).includes(master)).toBe(false);

    // The service cannot have used the plain file: it is not there while the service runs (it
    // is the admin's offline backup; later tests compare with it).
    const plain = join(keysDir, "master-secret");
    const offline = join(base, "master-secret.offline");
    await rename(plain, offline);
    try {
      const ks = await keyService();
      expect(await keysOf(await client(ks))).toEqual(expected);
      await waitLogged(ks, "master secret unwrapped by the KMS");
      await ks.stop();
      await ks.start();
      expect(await keysOf(await client(ks))).toEqual(expected);
      const ready = await readyz(ks);
      expect(ready.status).toBe(200);
      expect(ready.body).toMatch(/master secret: unwrapped at .* \(key id kek-1\)\nkms: ok \(current key id kek-1\)/);
      await stopAll();
    } finally {
      await rename(offline, plain);
    }
  });

  it("refuses a blob wrapped for another cluster: startup fails, no key is served", async () => {
    const err = await keyService({ clusterId: "some-other-cluster" }).catch((e: unknown) => e as Error);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(/exited during startup/);
    expect((err as Error).message).toMatch(/startup refused: .*belongs to cluster "cloak-test-cluster", not to this cluster "some-other-cluster"/);
  });

  it("starts not ready while the KMS is down: GetDataKey is UNAVAILABLE, and keys come once the KMS is back", async () => {
    await kms.kill();
    const ks = await keyService({ awaitReady: false });
    const c = await client(ks);
    const err = (await c.getKey(IDS[0] ?? "", 32).catch((e: unknown) => e)) as Error;
    expect(err).toBeInstanceOf(UnavailableError);
    expect(err.message).toMatch(/UNAVAILABLE: no keys are served yet: the master secret is not unwrapped \(KMS Decrypt at unix:.*UNAVAILABLE/);
    const ready = await readyz(ks);
    expect(ready.status).toBe(503);
    expect(ready.body).toMatch(/^not ready\nmaster secret: not unwrapped yet; no keys are served: .*\nkms: UNREACHABLE since/);
    await expect(c.probe()).rejects.toThrow(/NOT_SERVING/);
    expect(await metric(ks, "cloak_keyservice_master_secret_state", { state: "unwrapping" })).toBe(1);
    // The refused call left its audit line, and no line anywhere carries a key.
    expect(await waitLogged(ks, "GetDataKey")).toMatchObject({ audit: true, result: "UNAVAILABLE", data_key_id: IDS[0] });
    expect(ks.logLines().every((l) => !("data_key" in l))).toBe(true);

    await kms.start();
    await waitFor("the key service to unwrap once the KMS is back", async () => (await readyz(ks)).status === 200, 15_000);
    expect(await keysOf(c)).toEqual(expected);
    await waitLogged(ks, "key service ready");
  });

  it("keeps serving from memory when the KMS goes away later, and reports it", async () => {
    const ks = await keyService();
    const c = await client(ks);
    await kms.kill();
    await waitFor("the KMS to be reported unreachable", async () => (await metric(ks, "cloak_keyservice_kms_up")) === 0, 10_000);
    // Several re-checks later it is still serving: unreachable is not a refusal.
    await new Promise((r) => setTimeout(r, 1200));
    expect(await keysOf(c)).toEqual(expected);
    const ready = await readyz(ks);
    expect(ready.status).toBe(200);
    expect(ready.body).toMatch(/kms: UNREACHABLE since .*UNAVAILABLE.* \(serving from memory\)/);
    await waitLogged(ks, "KMS unreachable: serving keys from the master secret in memory");
    await c.probe();

    await kms.start();
    await waitFor("the KMS to be reported back", async () => (await metric(ks, "cloak_keyservice_kms_up")) === 1, 15_000);
    await waitLogged(ks, "KMS reachable again");
  });

  it("stops serving when the key is disabled in the HSM, and serves again when it is enabled", async () => {
    const ks = await keyService();
    const c = await client(ks);
    expect(await keysOf(c)).toEqual(expected);
    await kms.token("disable", "kek-1");
    await waitFor("the key service to stop serving", async () => (await readyz(ks)).status === 503, 10_000);
    const err = (await c.getKey("vol-after-disable", 32).catch((e: unknown) => e)) as Error;
    expect(err).toBeInstanceOf(UnavailableError);
    expect(err.message).toMatch(/no keys are served: the KMS refused the master secret \(KMS Decrypt at .*PERMISSION_DENIED: the key is disabled/);
    expect((await readyz(ks)).body).toMatch(/master secret: DENIED by the KMS/);
    await expect(c.probe()).rejects.toThrow(/NOT_SERVING/);
    await waitLogged(ks, "the KMS denied the master secret: dropped it, no keys are served");
    expect(await metric(ks, "cloak_keyservice_master_secret_state", { state: "denied" })).toBe(1);

    await kms.token("enable", "kek-1");
    await waitFor("the key service to serve again", async () => (await readyz(ks)).status === 200, 10_000);
    expect(await keysOf(c)).toEqual(expected);
  });

  it("rotation: reports the blob stale, rewraps it (the old blob opening until replaced) and derives the same keys", async () => {
    const ks = await keyService();
    const c = await client(ks);
    const old = join(base, "old.wrapped");
    await copyFile(join(keysDir, "master-secret.wrapped"), old);

    await kms.rotate("kek-2");
    await waitFor("the blob to be reported stale", async () => (await metric(ks, "cloak_keyservice_kms_wrapped_key_stale")) === 1, 10_000);
    expect(await waitLogged(ks, /the KMS key rotated/)).toMatchObject({ wrappedKeyId: "kek-1", currentKeyId: "kek-2" });
    expect((await readyz(ks)).body).toMatch(/wrapped under key kek-1, the KMS now encrypts with kek-2: run `cloak keys rewrap`/);
    // Still serving, under the old key.
    expect(await keysOf(c)).toEqual(expected);

    const out = await runCloak(["keys", "rewrap", keysDir, "--kms", kms.endpoint, "--cluster-id", CLUSTER]);
    expect(out).toMatch(/rewrapped the master secret from KMS key kek-1 to kek-2/);
    expect(parseEnvelope(await readFile(join(keysDir, "master-secret.wrapped"), "utf8"), "f").keyId).toBe("kek-2");
    await waitFor("the service to adopt the new blob", async () => (await metric(ks, "cloak_keyservice_kms_wrapped_key_stale")) === 0, 10_000);
    expect(await waitLogged(ks, "using the rewrapped master secret")).toMatchObject({ previousKeyId: "kek-1", keyId: "kek-2" });
    // A second rewrap has nothing to do.
    expect(await runCloak(["keys", "rewrap", keysDir, "--kms", kms.endpoint, "--cluster-id", CLUSTER])).toMatch(/already wrapped under the KMS's current key kek-2; nothing to do/);

    // Until the old key goes, the old blob still opens, to the same secret.
    const backend = createKmsV2Backend({ endpoint: kms.endpoint });
    try {
      const context = { purpose: "master-secret", clusterId: CLUSTER };
      const fromOld = await unwrapSecret(backend, context, parseEnvelope(await readFile(old, "utf8"), "old"));
      expect(fromOld.equals(await readFile(join(keysDir, "master-secret")))).toBe(true);
      // Retiring the old key changes nothing for a service on the new blob …
      await kms.token("disable", "kek-1");
      await new Promise((r) => setTimeout(r, 1000));
      expect((await readyz(ks)).status).toBe(200);
      expect(await keysOf(c)).toEqual(expected);
      // … and a restart unwraps the new blob: bit-identical keys.
      await ks.stop();
      await ks.start();
      expect(await keysOf(await client(ks))).toEqual(expected);
      // The old blob no longer opens.
      await expect(unwrapSecret(backend, context, parseEnvelope(await readFile(old, "utf8"), "old"))).rejects.toThrow(/PERMISSION_DENIED/);
    } finally {
      backend.close();
    }
  });

  it("stops serving when the key is destroyed in the HSM", async () => {
    const ks = await keyService();
    const c = await client(ks);
    await kms.token("destroy", kms.currentKey());
    await waitFor("the key service to stop serving", async () => (await readyz(ks)).status === 503, 10_000);
    const err = (await c.getKey(IDS[0] ?? "", 32).catch((e: unknown) => e)) as Error;
    expect(err.message).toMatch(/the KMS refused the master secret \(KMS Decrypt at .*NOT_FOUND/);
  });

  it("init --kms writes only the wrapped master secret, and the service serves from it", async () => {
    await kms.rotate("kek-3");
    const dir = join(base, "fresh", "keys");
    const out = await runCloak(["keys", "init", dir, "--dns", "localhost", "--ip", "127.0.0.1", "--client", "node=spiffe://cloak/ns/cloak-system/sa/cloak-csi-node", "--kms", kms.endpoint, "--cluster-id", CLUSTER]);
    expect(out).toContain("master-secret.wrapped");
    await expect(stat(join(dir, "master-secret"))).rejects.toThrow(/ENOENT/);
    expect(parseEnvelope(await readFile(join(dir, "master-secret.wrapped"), "utf8"), "f").keyId).toBe("kek-3");
    const ks = await keyService({ dir });
    const first = await keysOf(await client(ks));
    await ks.stop();
    await ks.start();
    expect(await keysOf(await client(ks))).toEqual(first);
  });
});
