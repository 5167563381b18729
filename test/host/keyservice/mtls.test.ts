import { readFile } from "node:fs/promises";
import { connect, type TLSSocket } from "node:tls";
import { join } from "node:path";
import { credentials as grpcCredentials, Metadata, type ServiceError } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { deriveDataKey } from "../../../lib/data-key.js";
import { loadProto } from "../../../lib/proto.js";
import type { KeyServiceClient } from "../../../proto/gen/cloak/keyservice/v1/KeyService.js";
import type { ProtoGrpcType as HealthProto } from "../../../proto/gen/health.js";
import type { ProtoGrpcType as KeyServiceProto } from "../../../proto/gen/keyservice.js";
import type { GetDataKeyResponse__Output } from "../../../proto/gen/cloak/keyservice/v1/GetDataKeyResponse.js";
import { startKeyServiceHarness, type KeyServiceHarness } from "../../keyservice-harness/index.js";
import { TestPki, VALIDITY, type TlsPaths } from "../../keyservice-harness/pki-fixtures.js";
import { waitFor } from "../../support/wait.js";

const KeyService = loadProto<KeyServiceProto>("keyservice.proto").cloak.keyservice.v1.KeyService;
const Health = loadProto<HealthProto>("health.proto").grpc.health.v1.Health;

let ks: KeyServiceHarness;
let pki: TestPki;
let otherPki: TestPki;
const clients: Record<string, TlsPaths> = {};

beforeAll(async () => {
  ks = await startKeyServiceHarness();
  const base = join(ks.keysDir, "..");
  pki = await TestPki.load(join(base, "pki"), join(ks.keysDir, "ca/ca.crt"), join(ks.keysDir, "ca/ca.key"));
  otherPki = await TestPki.create(join(base, "other-ca"), "some other CA");
  clients["expired"] = await pki.client("expired", ks.clientIdentity, VALIDITY.expired());
  clients["notYetValid"] = await pki.client("not-yet-valid", ks.clientIdentity, VALIDITY.notYetValid());
  clients["otherCa"] = await otherPki.client("other-ca", ks.clientIdentity);
  clients["unauthorised"] = await pki.client("unauthorised", "spiffe://cloak/ns/default/sa/curious");
  clients["dnsOnly"] = await pki.client("dns-only", "intruder.example");
});

afterAll(async () => {
  await ks?.cleanup();
});

/** A raw TLS handshake plus one read: how the server answers at the TLS level. */
async function handshake(client: Partial<TlsPaths>): Promise<{ ok: true } | { ok: false; error: string }> {
  const port = Number(ks.target.split(":")[1]);
  const socket: TLSSocket = connect({
    host: "127.0.0.1",
    port,
    servername: "localhost",
    ca: await readFile(ks.server.caFile),
    ...(client.certFile ? { cert: await readFile(client.certFile), key: await readFile(client.keyFile ?? "") } : {}),
    ALPNProtocols: ["h2"],
  });
  return new Promise((resolve) => {
    // With TLS 1.3 the server judges the client certificate after the client considers the
    // handshake done: a refusal arrives as an alert on the first read.
    let settled = false;
    const done = (r: { ok: true } | { ok: false; error: string }): void => {
      if (settled) return;
      settled = true;
      socket.destroy();
      resolve(r);
    };
    socket.once("error", (err: NodeJS.ErrnoException) => done({ ok: false, error: `${err.code ?? ""} ${err.message}` }));
    socket.once("secureConnect", () => {
      // An HTTP/2 preface; a server that accepted us answers with its SETTINGS frame.
      socket.write("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00");
    });
    socket.once("data", () => done({ ok: true }));
    socket.once("close", () => done({ ok: false, error: "closed" }));
  });
}

async function getKey(
  client: TlsPaths | undefined,
  id = "vol-1",
  length = 32,
): Promise<{ key?: Buffer; code?: string; details?: string }> {
  const creds = client
    ? grpcCredentials.createSsl(await readFile(client.caFile), await readFile(client.keyFile), await readFile(client.certFile))
    : grpcCredentials.createSsl(await readFile(ks.server.caFile));
  const stub: KeyServiceClient = new KeyService(ks.target, creds, { "grpc.ssl_target_name_override": "localhost", "grpc.default_authority": "localhost" });
  try {
    const response = await new Promise<GetDataKeyResponse__Output>((resolve, reject) =>
      stub.GetDataKey({ data_key_id: id, length }, new Metadata(), { deadline: Date.now() + 5000 }, (err, res) => (err || !res ? reject(err) : resolve(res))),
    );
    return { key: response.data_key };
  } catch (err) {
    const e = err as ServiceError;
    return { code: String(e.code), details: e.details };
  } finally {
    stub.close();
  }
}

const UNAVAILABLE = "14";

describe("mutual TLS at the handshake", () => {
  it("accepts a valid client certificate of its CA", async () => {
    expect(await handshake(ks.client)).toEqual({ ok: true });
  });

  // OpenSSL itself refuses a missing certificate with an alert; for the others Node's TLS
  // server checks the chain and validity after the handshake and hangs up without a word, so the
  // client sees its connection closed before the server's HTTP/2 SETTINGS. (A valid certificate
  // gets SETTINGS, above; a valid but unauthorised one too, below.)
  it.each([
    ["no client certificate", undefined, /certificate required|CERTIFICATE_REQUIRED/i],
    ["a certificate from another CA", "otherCa", /^closed$/],
    ["an expired certificate", "expired", /^closed$/],
    ["a certificate not yet valid", "notYetValid", /^closed$/],
  ])("refuses %s", async (_name, which, alert) => {
    const result = await handshake(which ? (clients[which] ?? {}) : {});
    expect(result.ok).toBe(false);
    expect(result.ok ? "" : result.error).toMatch(alert);
    // Through gRPC the caller just cannot connect, and no request reached the service.
    const before = ks.logLines().filter((l) => l["msg"] === "GetDataKey").length;
    const answer = await getKey(which ? clients[which] : undefined);
    expect(answer.code).toBe(UNAVAILABLE);
    expect(ks.logLines().filter((l) => l["msg"] === "GetDataKey").length).toBe(before);
  });

  it("refuses plain TCP without TLS", async () => {
    const stub: KeyServiceClient = new KeyService(ks.target, grpcCredentials.createInsecure());
    const err = await new Promise<ServiceError | null>((resolve) =>
      stub.GetDataKey({ data_key_id: "vol-1", length: 32 }, { deadline: Date.now() + 3000 }, (e) => resolve(e)),
    );
    stub.close();
    expect(err?.code).toBe(Number(UNAVAILABLE));
  });
});

describe("authorisation and answers", () => {
  it("lets a valid certificate that is not on the allow-list through the handshake (it is refused per call)", async () => {
    expect(await handshake(clients["unauthorised"] ?? {})).toEqual({ ok: true });
  });

  it("gives a valid, authorised client the key derived from the files, and audits it", async () => {
    const answer = await getKey(ks.client, "6ba7b810-9dad-11d1-80b4-00c04fd430c8", 32);
    const master = await readFile(join(ks.keysDir, "master-secret"));
    const salt = await readFile(join(ks.keysDir, "salt"));
    const expected = deriveDataKey(master, salt, "6ba7b810-9dad-11d1-80b4-00c04fd430c8", 32);
    expect(answer.key?.equals(expected)).toBe(true);
    await waitFor("the request's audit line", async () => ks.logLines().some((l) => l["msg"] === "GetDataKey" && l["data_key_id"] === "6ba7b810-9dad-11d1-80b4-00c04fd430c8"), 5000);
    const line = ks.logLines().find((l) => l["data_key_id"] === "6ba7b810-9dad-11d1-80b4-00c04fd430c8");
    expect(line).toMatchObject({ audit: true, client: ks.clientIdentity, result: "OK", length: 32 });
    expect(ks.output()).not.toContain(expected.toString("hex"));
    expect(ks.output()).not.toContain(expected.toString("base64"));
  });

  it.each([
    ["a URI identity not on the list", "unauthorised", "spiffe://cloak/ns/default/sa/curious"],
    ["a DNS identity not on the list", "dnsOnly", "intruder.example"],
  ])("answers PermissionDenied to %s", async (_name, which, identity) => {
    const answer = await getKey(clients[which], "vol-2", 32);
    expect(answer.code).toBe("7");
    expect(answer.details).toMatch(/not allowed to get data keys/);
    await waitFor(`an audit line for ${identity}`, async () => ks.logLines().some((l) => l["client"] === identity), 5000);
    expect(ks.logLines().find((l) => l["client"] === identity)).toMatchObject({ result: "PERMISSION_DENIED", data_key_id: "vol-2" });
  });

  it.each([
    ["", 32],
    ["a".repeat(257), 32],
    ["vol/../../etc", 32],
    ["vol 1", 32],
    ["vol-1", 15],
    ["vol-1", 65],
    ["vol-1", 0],
  ])("answers InvalidArgument for id %j length %d", async (id, length) => {
    const answer = await getKey(ks.client, id, length);
    expect(answer.code).toBe("3");
  });

  it("serves grpc.health.v1 over mTLS and Prometheus metrics over HTTP", async () => {
    const creds = grpcCredentials.createSsl(await readFile(ks.client.caFile), await readFile(ks.client.keyFile), await readFile(ks.client.certFile));
    const health = new Health(ks.target, creds, { "grpc.ssl_target_name_override": "localhost", "grpc.default_authority": "localhost" });
    const status = await new Promise<string | undefined>((resolve, reject) =>
      health.Check({ service: "cloak.keyservice.v1.KeyService" }, (err, res) => (err ? reject(err) : resolve(res?.status))),
    );
    health.close();
    expect(status).toBe("SERVING");
    const metrics = await (await fetch(`http://127.0.0.1:${ks.metricsPort()}/metrics`)).text();
    expect(metrics).toMatch(/cloak_keyservice_requests_total\{result="OK"\} [1-9]/);
    expect(metrics).toMatch(/cloak_keyservice_requests_total\{result="PERMISSION_DENIED"\} 2/);
    expect(metrics).toMatch(/cloak_keyservice_requests_total\{result="INVALID_ARGUMENT"\} 7/);
    expect(metrics).toMatch(/cloak_keyservice_request_duration_seconds_bucket\{le="0.001"\} \d+/);
    expect(metrics).toMatch(/cloak_keyservice_certificate_expiry_timestamp_seconds \d{10}/);
    expect((await fetch(`http://127.0.0.1:${ks.metricsPort()}/readyz`)).status).toBe(200);
  });
});
