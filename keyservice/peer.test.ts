import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { credentials, Metadata, ServerCredentials, type sendUnaryData, type ServerUnaryCall } from "@grpc/grpc-js";
import { afterAll, beforeAll, expect, it } from "vitest";
import { startGrpcServer, type RunningServer } from "../lib/grpc-server.js";
import { createLogger } from "../lib/log.js";
import { loadProto } from "../lib/proto.js";
import type { KeyServiceClient } from "../proto/gen/cloak/keyservice/v1/KeyService.js";
import type { ProtoGrpcType } from "../proto/gen/keyservice.js";
import { TestPki, type TlsPaths } from "../test/keyservice-harness/pki-fixtures.js";
import { peerCacheApplies, peerOf, type Peer } from "./peer.js";

const KeyService = loadProto<ProtoGrpcType>("keyservice.proto").cloak.keyservice.v1.KeyService;
let dir: string;
let server: RunningServer;
let pki: TestPki;
const seen: { peer: Peer | null; fast: boolean; authContext: string | undefined }[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "cloak-ks-peer-"));
  pki = await TestPki.create(dir);
  const tls = await pki.server("server");
  server = await startGrpcServer({
    endpoint: { kind: "tcp", host: "127.0.0.1", port: 0 },
    logger: createLogger({ component: "test", level: "silent" }),
    drainMs: 100,
    credentials: ServerCredentials.createSsl(await readFile(pki.caFile), [{ cert_chain: await readFile(tls.certFile), private_key: await readFile(tls.keyFile) }], true),
    services: [
      {
        definition: KeyService.service,
        implementation: {
          GetDataKey(call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) {
            seen.push({ peer: peerOf(call), fast: peerCacheApplies(call), authContext: call.getAuthContext().sslPeerCertificate?.subjectaltname });
            callback(null, { data_key: Buffer.alloc(16) });
          },
        },
      },
    ],
  });
});

afterAll(async () => {
  await server?.stop();
  await rm(dir, { recursive: true, force: true });
});

async function callAs(client: TlsPaths, times: number): Promise<void> {
  const port = server.endpoint.kind === "tcp" ? server.endpoint.port : 0;
  const stub: KeyServiceClient = new KeyService(
    `127.0.0.1:${port}`,
    credentials.createSsl(await readFile(client.caFile), await readFile(client.keyFile), await readFile(client.certFile)),
    { "grpc.ssl_target_name_override": "localhost", "grpc.default_authority": "localhost" },
  );
  for (let i = 0; i < times; i++) {
    await new Promise<void>((resolve, reject) => stub.GetDataKey({ data_key_id: "x", length: 16 }, new Metadata(), (err) => (err ? reject(err) : resolve())));
  }
  stub.close();
}

it("finds each connection's verified identity through the per-connection cache (grpc-js internals as pinned)", async () => {
  await callAs(await pki.client("a", "spiffe://cloak/ns/a/sa/one"), 3);
  await callAs(await pki.client("b", "b.nodes.example"), 2);
  // If this fails after a grpc-js upgrade, peer.ts fell back to the slow path: find the session again.
  expect(seen.every((s) => s.fast)).toBe(true);
  expect(seen.map((s) => [...(s.peer?.identity.uris ?? []), ...(s.peer?.identity.dnsNames ?? [])])).toEqual([
    ["spiffe://cloak/ns/a/sa/one"],
    ["spiffe://cloak/ns/a/sa/one"],
    ["spiffe://cloak/ns/a/sa/one"],
    ["b.nodes.example"],
    ["b.nodes.example"],
  ]);
  // The cache agrees with grpc-js's public (slow) answer for every call.
  expect(seen.map((s) => s.authContext)).toEqual([
    "URI:spiffe://cloak/ns/a/sa/one",
    "URI:spiffe://cloak/ns/a/sa/one",
    "URI:spiffe://cloak/ns/a/sa/one",
    "DNS:b.nodes.example",
    "DNS:b.nodes.example",
  ]);
  expect(seen[0]?.peer?.subject).toBe("CN=spiffe://cloak/ns/a/sa/one");
});
