import { randomUUID } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { credentials as grpcCredentials, Metadata, status as GrpcStatus, type ServiceError } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { deriveDataKey } from "../../../lib/data-key.js";
import { FailedPreconditionError } from "../../../lib/errors.js";
import { createLogger } from "../../../lib/log.js";
import { loadProto } from "../../../lib/proto.js";
import { LINEAGE_PATH } from "../../../lib/key-lineage.js";
import { kubernetesLineage, type KeyLineage } from "../../../csi/keys/lineage.js";
import type { KeyServiceClient } from "../../../proto/gen/cloak/keyservice/v1/KeyService.js";
import type { ProtoGrpcType as KeyServiceProto } from "../../../proto/gen/keyservice.js";
import { startApiServer, type ApiServer } from "../../apiserver/apiserver.js";
import { AUDIENCE, DRIVER, NS, otherIssuerKey, prepareAuthzCluster, reSign, type AuthzCluster } from "../../keyservice-harness/cluster.js";
import { runCloak, startKeyServiceHarness, type KeyServiceHarness } from "../../keyservice-harness/index.js";
import { startKmsPlugin } from "../../kms-plugin/harness.js";
import { waitFor } from "../../support/wait.js";

// Per-node, per-volume authorisation against a real kube-apiserver: real pods (bound to nodes
// with spec.nodeName, as the scheduler does; no kubelet), real projected-style tokens from the
// TokenRequest API, the key service's RBAC from the manifests, its informers and TokenReview,
// and key lineages written by the controller's own code (csi/keys/lineage.ts).

const KeyService = loadProto<KeyServiceProto>("keyservice.proto").cloak.keyservice.v1.KeyService;
const APPS = "apps";
const [KA, KB, KR, KT] = [randomUUID(), randomUUID(), randomUUID(), randomUUID()];

let dir: string;
let api: ApiServer;
let cluster: AuthzCluster;
let lineage: KeyLineage;
let ks: KeyServiceHarness;
let ks2: KeyServiceHarness | undefined;
const tokens: Record<string, string> = {};

const args = () => ["--authorization", "kubernetes", "--kubeconfig", cluster.keyserviceKubeconfig, "--authz-grace-ms", "500"];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "cloak-ks-authz-"));
  api = await startApiServer({ dir: join(dir, "api") });
  cluster = await prepareAuthzCluster(api, join(dir, "api"));
  lineage = kubernetesLineage({ api: cluster.api, logger: createLogger({ component: "test", level: "silent" }) });
  await cluster.create("/api/v1/namespaces", { metadata: { name: APPS } });
  await cluster.create(`/api/v1/namespaces/${APPS}/serviceaccounts`, { metadata: { name: "default" } });
  await cluster.create(`/api/v1/namespaces/${NS}/serviceaccounts`, { metadata: { name: "intruder" } });
  for (const n of ["node-a", "node-b"]) await cluster.node(n);
  // The node plugin on each node, and a pod of another service account on node-a.
  await cluster.pod({ namespace: NS, name: "csi-a", node: "node-a" });
  await cluster.pod({ namespace: NS, name: "csi-b", node: "node-b" });
  await cluster.pod({ namespace: NS, name: "intruder-a", node: "node-a", serviceAccount: "intruder" });
  tokens["a"] = await cluster.podToken({ namespace: NS, name: "csi-a" });
  tokens["b"] = await cluster.podToken({ namespace: NS, name: "csi-b" });
  tokens["intruder"] = await cluster.podToken({ namespace: NS, name: "intruder-a", serviceAccount: "intruder" });
  tokens["wrongAudience"] = await cluster.podToken({ namespace: NS, name: "csi-a", audience: "https://kubernetes.default.svc.cluster.local" });

  // Volume A on node-a; volume B on node-b; A's clone (same key) used on node-b.
  const volume = async (pv: string, keyId: string, claim: string, node: string, podName: string) => {
    await lineage.bind({ keyId, driver: DRIVER, member: { kind: "volume", id: `vol-${pv}` } });
    await cluster.boundVolume({ pv, handle: `vol-${pv}`, keyId, namespace: APPS, claim });
    await cluster.pod({ namespace: APPS, name: podName, node, serviceAccount: "default", claims: [claim] });
  };
  await volume("pv-a", KA, "claim-a", "node-a", "app-a");
  await volume("pv-b", KB, "claim-b", "node-b", "app-b");
  await volume("pv-a-clone", KA, "claim-a-clone", "node-b", "app-a-clone");

  ks = await startKeyServiceHarness({ dir: join(dir, "ks1"), extraArgs: args() });
}, 240_000);

afterAll(async () => {
  await ks2?.cleanup();
  await ks?.cleanup();
  cluster?.close();
  await api?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

interface Answer {
  code: string;
  details?: string;
  key?: Buffer;
  /** This request's audit line. */
  audit: Record<string, unknown>;
}

const auditLines = (service: KeyServiceHarness, keyId: string) => service.logLines().filter((l) => l["audit"] === true && l["data_key_id"] === keyId);

async function ask(service: KeyServiceHarness, keyId: string, token: string | undefined): Promise<Answer> {
  const before = auditLines(service, keyId).length;
  const answer = await call(service, keyId, token);
  // Audit lines are written in batches (every 200 ms at the latest): wait for this one.
  const audit = await waitFor(`the audit line for ${keyId}`, async () => auditLines(service, keyId)[before], 5_000);
  return { ...answer, audit };
}

async function call(service: KeyServiceHarness, keyId: string, token: string | undefined): Promise<Omit<Answer, "audit">> {
  const c = service.client;
  const stub: KeyServiceClient = new KeyService(service.target, grpcCredentials.createSsl(await readFile(c.caFile), await readFile(c.keyFile), await readFile(c.certFile)), {
    "grpc.ssl_target_name_override": "localhost",
    "grpc.default_authority": "localhost",
  });
  const metadata = new Metadata();
  if (token !== undefined) metadata.set("authorization", `Bearer ${token}`);
  try {
    return await new Promise<Omit<Answer, "audit">>((resolve) =>
      stub.GetDataKey({ data_key_id: keyId, length: 32 }, metadata, { deadline: Date.now() + 10_000 }, (err: ServiceError | null, res) =>
        resolve(err ? { code: GrpcStatus[err.code], details: err.details } : { code: "OK", ...(res?.data_key ? { key: Buffer.from(res.data_key) } : {}) }),
      ),
    );
  } finally {
    stub.close();
  }
}

async function expectedKey(keyId: string): Promise<Buffer> {
  return deriveDataKey(await readFile(join(ks.keysDir, "master-secret")), await readFile(join(ks.keysDir, "salt")), keyId, 32);
}

describe("a node gets the keys of the volumes meant for it, and no others", () => {
  it("gives node-a its volume's key, with an audit line naming node, pod and why", async () => {
    const answer = await ask(ks, KA, tokens["a"]);
    expect(answer.code).toBe("OK");
    expect(answer.key?.equals(await expectedKey(KA))).toBe(true);
    expect(answer.audit).toMatchObject({
      result: "OK",
      node: "node-a",
      pod: `${NS}/csi-a`,
      client: "spiffe://cloak/ns/cloak-system/sa/cloak-csi-node",
      via: `pod ${APPS}/app-a uses claim ${APPS}/claim-a bound to pv-a`,
    });
  });

  it("refuses node-a the key of node-b's volume", async () => {
    const answer = await ask(ks, KB, tokens["a"]);
    expect(answer).toMatchObject({ code: "PERMISSION_DENIED", details: `node node-a holds none of the volumes with key ${KB} (pv-b)` });
    expect(answer.audit).toMatchObject({ result: "PERMISSION_DENIED", node: "node-a", pod: `${NS}/csi-a`, reason: expect.stringMatching(/holds none/) });
  });

  it("gives a clone's key to the node that holds the clone", async () => {
    const answer = await ask(ks, KA, tokens["b"]);
    expect(answer.code).toBe("OK");
    expect(answer.key?.equals(await expectedKey(KA))).toBe(true);
    expect(answer.audit).toMatchObject({ node: "node-b", via: `pod ${APPS}/app-a-clone uses claim ${APPS}/claim-a-clone bound to pv-a-clone` });
  });

  it("refuses a key id bound to nothing", async () => {
    const nothing = randomUUID();
    const answer = await ask(ks, nothing, tokens["a"]);
    expect(answer).toMatchObject({ code: "PERMISSION_DENIED", details: `key id ${nothing} is bound to no volume (no CloakKey record)` });
    expect(answer.audit).toMatchObject({ result: "PERMISSION_DENIED", node: "node-a" });
  });

  it("follows the cluster: a pod that goes takes its node's access with it", async () => {
    await cluster.remove(`/api/v1/namespaces/${APPS}/pods/app-b`);
    await waitFor("node-b refused KB", async () => (await ask(ks, KB, tokens["b"])).code === "PERMISSION_DENIED", 10_000);
    await cluster.pod({ namespace: APPS, name: "app-b", node: "node-b", serviceAccount: "default", claims: ["claim-b"] });
    // Within the grace period: the informer catches up while the request waits.
    expect((await ask(ks, KB, tokens["b"])).code).toBe("OK");
  });
});

describe("tokens that do not prove a node plugin pod are refused", () => {
  it("no token", async () => {
    const id = randomUUID();
    const answer = await ask(ks, id, undefined);
    expect(answer).toMatchObject({ code: "UNAUTHENTICATED", details: expect.stringMatching(/^no token/) });
    expect(answer.audit).toMatchObject({ result: "UNAUTHENTICATED" });
  });

  it("a token for another audience", async () => {
    const id = randomUUID();
    const answer = await ask(ks, id, tokens["wrongAudience"]);
    expect(answer).toMatchObject({ code: "UNAUTHENTICATED", details: expect.stringMatching(/the API server refused the token: .*audience/) });
    expect(answer.audit).toMatchObject({ result: "UNAUTHENTICATED", reason: expect.stringMatching(/audience/) });
  });

  it("an expired token (signed by the API server's key, expired claims)", async () => {
    const now = Math.floor(Date.now() / 1000);
    const expired = reSign(tokens["a"] ?? "", await cluster.signingKey(), (c) => ({ ...c, iat: now - 1200, nbf: now - 1200, exp: now - 600 }));
    const answer = await ask(ks, KA, expired);
    expect(answer).toMatchObject({ code: "UNAUTHENTICATED", details: expect.stringMatching(/refused the token: .*expired/) });
    expect(answer.audit).toMatchObject({ result: "UNAUTHENTICATED" });
  });

  it("a token signed by another issuer", async () => {
    const forged = reSign(tokens["a"] ?? "", otherIssuerKey(), (c) => c);
    expect(await ask(ks, KA, forged)).toMatchObject({ code: "UNAUTHENTICATED", details: expect.stringMatching(/refused the token/) });
  });

  it("a token of another service account, on the right node", async () => {
    const answer = await ask(ks, KA, tokens["intruder"]);
    expect(answer).toMatchObject({ code: "PERMISSION_DENIED", details: `service account ${NS}/intruder is not the node plugin's (${NS}/cloak-csi-node)` });
    expect(answer.audit).toMatchObject({ result: "PERMISSION_DENIED", node: "node-a", pod: `${NS}/intruder-a` });
  });

  it("the token of a pod that was deleted: already verified, and never seen before", async () => {
    await cluster.pod({ namespace: NS, name: "csi-gone", node: "node-a" });
    const used = await cluster.podToken({ namespace: NS, name: "csi-gone" });
    const unused = await cluster.podToken({ namespace: NS, name: "csi-gone" });
    expect((await ask(ks, KA, used)).code).toBe("OK");
    await cluster.remove(`/api/v1/namespaces/${NS}/pods/csi-gone`);
    // The cached review no longer counts: the informer saw the pod go.
    const refused = await waitFor("the gone pod's token refused", async () => {
      const a = await ask(ks, KA, used);
      return a.code === "UNAUTHENTICATED" ? a : undefined;
    }, 10_000);
    expect(refused.audit).toMatchObject({ result: "UNAUTHENTICATED", reason: `the token's pod ${NS}/csi-gone does not exist (any more)` });
    // A fresh token of the gone pod: the API server itself refuses it.
    expect(await ask(ks, KA, unused)).toMatchObject({ code: "UNAUTHENTICATED", details: expect.stringMatching(/refused the token/) });
  });
});

describe("revocation", () => {
  it("keeps a key alive while a snapshot carries it, and refuses it for ever once the last copy is gone", async () => {
    // A volume on node-a and its snapshot.
    await lineage.bind({ keyId: KR, driver: DRIVER, member: { kind: "volume", id: "vol-pv-r" } });
    await lineage.bind({ keyId: KR, driver: DRIVER, member: { kind: "snapshot", id: "snap-r" } });
    await cluster.boundVolume({ pv: "pv-r", handle: "vol-pv-r", keyId: KR, namespace: APPS, claim: "claim-r" });
    await cluster.pod({ namespace: APPS, name: "app-r", node: "node-a", serviceAccount: "default", claims: ["claim-r"] });
    expect((await ask(ks, KR, tokens["a"])).code).toBe("OK");

    // The volume is deleted (DeleteVolume releases it, the PV goes): the snapshot keeps the key.
    expect(await lineage.release({ keyId: KR, driver: DRIVER, member: { kind: "volume", id: "vol-pv-r" } })).toEqual({ revoked: false });
    await cluster.remove("/api/v1/persistentvolumes/pv-r");
    await waitFor("no PV carries KR", async () => (await ask(ks, KR, tokens["a"])).details?.includes("no PersistentVolume") === true, 10_000);

    // Restored from the snapshot: the new volume inherits the key and its node gets it.
    await lineage.bind({ keyId: KR, driver: DRIVER, member: { kind: "volume", id: "vol-pv-r2" } });
    await cluster.boundVolume({ pv: "pv-r2", handle: "vol-pv-r2", keyId: KR, namespace: APPS, claim: "claim-r2" });
    await cluster.pod({ namespace: APPS, name: "app-r2", node: "node-a", serviceAccount: "default", claims: ["claim-r2"] });
    expect((await ask(ks, KR, tokens["a"])).code).toBe("OK");

    // The restore and the snapshot deleted (the wrapper finds the record by its label): revoked.
    expect(await lineage.release({ driver: DRIVER, member: { kind: "volume", id: "vol-pv-r2" } })).toEqual({ revoked: false });
    expect(await lineage.release({ keyId: KR, driver: DRIVER, member: { kind: "snapshot", id: "snap-r" } })).toEqual({ revoked: true });
    expect(await lineage.release({ keyId: KR, driver: DRIVER, member: { kind: "snapshot", id: "snap-r" } })).toEqual({ revoked: true });
    // Even with the PV, claim and pod still there, and a valid token of that node.
    const refused = await waitFor("KR refused as revoked", async () => {
      const a = await ask(ks, KR, tokens["a"]);
      return /revoked at/.test(a.details ?? "") ? a : undefined;
    }, 10_000);
    expect(refused.audit).toMatchObject({ result: "PERMISSION_DENIED", node: "node-a", reason: expect.stringMatching(/^key .* was revoked at/) });

    // No new volume may carry it, and the record cannot be turned back.
    await expect(lineage.bind({ keyId: KR, driver: DRIVER, member: { kind: "volume", id: "vol-late-clone" } })).rejects.toThrow(FailedPreconditionError);
    const record = await cluster.api.json<Record<string, unknown>>("GET", `${LINEAGE_PATH}/${KR}`);
    await expect(
      cluster.api.json("PUT", `${LINEAGE_PATH}/${KR}`, { body: { ...record, spec: { driver: DRIVER, volumes: ["vol-pv-r2"], revoked: false } } }),
    ).rejects.toThrow(/a revoked key stays revoked|a revoked key has no volumes/);
  });

  it("serialises a clone racing the deletion of its source: either the clone keeps the key or it is refused", async () => {
    await lineage.bind({ keyId: KT, driver: DRIVER, member: { kind: "volume", id: "vol-src" } });
    const [clone, release] = await Promise.allSettled([
      lineage.bind({ keyId: KT, driver: DRIVER, member: { kind: "volume", id: "vol-clone" } }),
      lineage.release({ keyId: KT, driver: DRIVER, member: { kind: "volume", id: "vol-src" } }),
    ]);
    expect(release.status).toBe("fulfilled");
    const record = await cluster.api.json<{ spec: { volumes?: string[]; revoked?: boolean } }>("GET", `${LINEAGE_PATH}/${KT}`);
    if (clone.status === "fulfilled") {
      expect(record.spec).toMatchObject({ volumes: ["vol-clone"], revoked: false });
    } else {
      expect(clone.reason).toBeInstanceOf(FailedPreconditionError);
      expect(record.spec.revoked).toBe(true);
    }
  });
});

describe("replicas", () => {
  const table = (): [string, string | undefined][] => [
    [KA, tokens["a"]],
    [KB, tokens["a"]],
    [KA, tokens["b"]],
    [KB, tokens["b"]],
    [KR, tokens["a"]],
    [KA, tokens["intruder"]],
    [KA, undefined],
  ];
  const answers = async (service: KeyServiceHarness) => {
    const out: string[] = [];
    for (const [keyId, token] of table()) {
      const a = await ask(service, keyId, token);
      out.push(`${a.code} ${a.key?.toString("hex") ?? a.details ?? ""}`);
    }
    return out;
  };

  it("give the same answers, and a restarted one loses nothing", async () => {
    ks2 = await startKeyServiceHarness({ dir: join(dir, "ks1"), extraArgs: args() });
    const first = await answers(ks);
    expect(first.map((a) => a.split(" ")[0])).toEqual(["OK", "PERMISSION_DENIED", "OK", "OK", "PERMISSION_DENIED", "PERMISSION_DENIED", "UNAUTHENTICATED"]);
    expect(await answers(ks2)).toEqual(first);
    await ks.stop();
    await ks.start();
    expect(await answers(ks)).toEqual(first);
    expect(ks2.pid()).toBeDefined();
  });

  it("give the same answers with the master secret wrapped by a real KMS v2 plugin (KMS mode)", async () => {
    const kms = await startKmsPlugin();
    let inKmsMode: KeyServiceHarness | undefined;
    try {
      // The replicas' own keys, wrapped: same master secret, so the same keys where allowed.
      const keysDir = join(dir, "ks1", "keys");
      await runCloak(["keys", "wrap", keysDir, "--kms", kms.endpoint, "--cluster-id", "authz-test"]);
      inKmsMode = await startKeyServiceHarness({
        dir: join(dir, "ks1"),
        masterSecretArgs: ["--kms", kms.endpoint, "--cluster-id", "authz-test", "--wrapped-master-secret", join(keysDir, "master-secret.wrapped")],
        extraArgs: args(),
      });
      expect(await answers(inKmsMode)).toEqual(await answers(ks));
      expect(inKmsMode.logLines().some((l) => l["msg"] === "master secret unwrapped by the KMS")).toBe(true);
    } finally {
      await inKmsMode?.cleanup();
      await kms.cleanup();
    }
  });

  it("need the manifests' RBAC and nothing more: the key service's token lists what it watches", async () => {
    const lines = ks.logLines().filter((l) => l["msg"] === "authorisation caches synced");
    expect(lines.at(-1)).toMatchObject({ source: expect.stringMatching(/^kubeconfig /), pvs: expect.any(Number), pods: expect.any(Number), keys: expect.any(Number) });
  });
});

describe("audit", () => {
  it("wrote one line per request and never a key", async () => {
    const keyHex = (await expectedKey(KA)).toString("hex");
    expect(ks.output()).not.toContain(keyHex);
    expect(ks.output()).not.toContain((await expectedKey(KA)).toString("base64"));
    expect(ks.output()).not.toContain(tokens["a"]);
    expect(AUDIENCE).toBe("cloak-keyservice");
  });
});
