import { mkdtemp, readFile, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Metadata, ServerCredentials, status as GrpcStatus, type sendUnaryData, type ServerUnaryCall } from "@grpc/grpc-js";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { DeadlineExceededError, InternalError, InvalidArgumentError, PermissionDeniedError, UnavailableError } from "../../lib/errors.js";
import { startGrpcServer, type RunningServer } from "../../lib/grpc-server.js";
import { createLogger } from "../../lib/log.js";
import { loadProto } from "../../lib/proto.js";
import type { GetDataKeyRequest__Output } from "../../proto/gen/cloak/keyservice/v1/GetDataKeyRequest.js";
import type { GetDataKeyResponse } from "../../proto/gen/cloak/keyservice/v1/GetDataKeyResponse.js";
import type { ProtoGrpcType as HealthProto } from "../../proto/gen/health.js";
import type { ProtoGrpcType as KeyServiceProto } from "../../proto/gen/keyservice.js";
import { TestPki, type TlsPaths } from "../../test/keyservice-harness/pki-fixtures.js";
import { createKeyServiceKeySource } from "./keyservice-key-source.js";
import type { KeySource } from "./key-source.js";

/** What the scripted server does with the n-th GetDataKey call. */
type Behaviour = (n: number, request: GetDataKeyRequest__Output) => { code: GrpcStatus; delayMs?: number; bytes?: number };

const logger = createLogger({ component: "test", level: "silent" });
let dir: string;
let server: RunningServer;
let client: TlsPaths;
let behaviour: Behaviour;
let healthStatus: "SERVING" | "NOT_SERVING";
const calls: { peer: string; authorization: string | undefined }[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "cloak-ks-client-"));
  const pki = await TestPki.create(dir);
  const serverTls = await pki.server("server");
  client = await pki.client("client", "spiffe://cloak/ns/cloak-system/sa/cloak-csi-node");
  const keyService = loadProto<KeyServiceProto>("keyservice.proto").cloak.keyservice.v1.KeyService;
  const health = loadProto<HealthProto>("health.proto").grpc.health.v1.Health;
  server = await startGrpcServer({
    endpoint: { kind: "tcp", host: "127.0.0.1", port: 0 },
    logger,
    drainMs: 100,
    credentials: ServerCredentials.createSsl(
      await readFile(pki.caFile),
      [{ cert_chain: await readFile(serverTls.certFile), private_key: await readFile(serverTls.keyFile) }],
      true,
    ),
    services: [
      {
        definition: keyService.service,
        implementation: {
          GetDataKey(call: ServerUnaryCall<GetDataKeyRequest__Output, GetDataKeyResponse>, callback: sendUnaryData<GetDataKeyResponse>) {
            const authorization = call.metadata.get("authorization")[0];
            calls.push({ peer: call.getPeer(), authorization: typeof authorization === "string" ? authorization : undefined });
            const what = behaviour(calls.length, call.request);
            setTimeout(() => {
              if (what.code !== GrpcStatus.OK) return callback({ code: what.code, details: `scripted ${GrpcStatus[what.code]}`, metadata: new Metadata() });
              callback(null, { data_key: Buffer.alloc(what.bytes ?? call.request.length, 7) });
            }, what.delayMs ?? 0);
          },
        },
      },
      {
        definition: health.service,
        implementation: {
          Check: (_call: unknown, callback: sendUnaryData<unknown>) => callback(null, { status: healthStatus }),
          Watch: () => undefined,
        },
      },
    ],
  });
});

afterAll(async () => {
  await server.stop();
  await rm(dir, { recursive: true, force: true });
});

beforeEach(() => {
  calls.length = 0;
  behaviour = () => ({ code: GrpcStatus.OK });
  healthStatus = "SERVING";
});

async function source(options: { attempts?: number; callTimeoutMs?: number; tokenFile?: string } = {}): Promise<KeySource> {
  const port = server.endpoint.kind === "tcp" ? server.endpoint.port : 0;
  return createKeyServiceKeySource({
    target: `127.0.0.1:${port}`,
    serverName: "localhost",
    ...client,
    initialBackoffMs: 20,
    maxBackoffMs: 80,
    logger,
    ...options,
  });
}

describe("key service KeySource", () => {
  it("gets keys over one long-lived mutual-TLS connection", async () => {
    const keys = await source();
    try {
      for (let i = 0; i < 5; i++) expect((await keys.getKey(`vol-${i}`, 32)).equals(Buffer.alloc(32, 7))).toBe(true);
      expect(new Set(calls.map((c) => c.peer)).size).toBe(1);
      await keys.probe();
    } finally {
      await keys.close();
    }
  });

  it("retries Unavailable and DeadlineExceeded with backoff, then succeeds", async () => {
    // The deadline is generous for an instant answer (a loaded machine once took over 150 ms for
    // one) and far below the slow one's delay.
    behaviour = (n) => (n === 1 ? { code: GrpcStatus.UNAVAILABLE } : n === 2 ? { code: GrpcStatus.OK, delayMs: 4_000 } : { code: GrpcStatus.OK });
    const keys = await source({ callTimeoutMs: 1_000 });
    try {
      expect(await keys.getKey("vol-1", 32)).toHaveLength(32);
      expect(calls).toHaveLength(3);
    } finally {
      await keys.close();
    }
  });

  it("gives up after the configured attempts with UnavailableError and a clear message", async () => {
    behaviour = () => ({ code: GrpcStatus.UNAVAILABLE });
    const keys = await source({ attempts: 3 });
    try {
      const started = Date.now();
      const err = await keys.getKey("vol-1", 32).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(UnavailableError);
      expect((err as Error).message).toMatch(/is unavailable \(UNAVAILABLE: scripted UNAVAILABLE\) after 3 attempts; volumes cannot be staged/);
      expect(calls).toHaveLength(3);
      // Two backoffs of 10..20 ms and 20..40 ms at least.
      expect(Date.now() - started).toBeGreaterThanOrEqual(30);
    } finally {
      await keys.close();
    }
  });

  it("does not retry answers that retrying cannot change", async () => {
    const keys = await source();
    try {
      behaviour = () => ({ code: GrpcStatus.PERMISSION_DENIED });
      await expect(keys.getKey("vol-1", 32)).rejects.toThrow(PermissionDeniedError);
      expect(calls).toHaveLength(1);
      behaviour = () => ({ code: GrpcStatus.OK, bytes: 31 });
      await expect(keys.getKey("vol-1", 32)).rejects.toThrow(new InternalError("the key service returned 31 bytes for a 32-byte key"));
      await expect(keys.getKey("bad/id", 32)).rejects.toThrow(InvalidArgumentError);
      expect(calls).toHaveLength(2);
    } finally {
      await keys.close();
    }
  });

  it("stops when its caller gives up", async () => {
    behaviour = () => ({ code: GrpcStatus.OK, delayMs: 2000 });
    const keys = await source();
    try {
      const abort = new AbortController();
      setTimeout(() => abort.abort(), 100);
      const started = Date.now();
      await expect(keys.getKey("vol-1", 32, { signal: abort.signal })).rejects.toThrow(DeadlineExceededError);
      expect(Date.now() - started).toBeLessThan(1000);
    } finally {
      await keys.close();
    }
  });

  it("sends the projected token with each request, and the renewed one after a refusal", async () => {
    const tokenFile = join(dir, "token");
    const write = async (token: string) => {
      await writeFile(`${tokenFile}.tmp`, token);
      await rename(`${tokenFile}.tmp`, tokenFile);
    };
    await write("first.token.a");
    const keys = await source({ tokenFile });
    try {
      await keys.getKey("vol-1", 32);
      expect(calls.at(-1)?.authorization).toBe("Bearer first.token.a");
      // kubelet renewed the token and the service no longer takes the old one.
      await write("second.token.b");
      behaviour = (_n, _r) => (calls.at(-1)?.authorization === "Bearer first.token.a" ? { code: GrpcStatus.UNAUTHENTICATED } : { code: GrpcStatus.OK });
      await keys.getKey("vol-1", 32);
      expect(calls.at(-1)?.authorization).toBe("Bearer second.token.b");
      // A refusal that re-reading cannot turn is reported, once.
      behaviour = () => ({ code: GrpcStatus.UNAUTHENTICATED });
      const before = calls.length;
      await expect(keys.getKey("vol-1", 32)).rejects.toThrow(/did not accept this node's credentials: scripted UNAUTHENTICATED/);
      expect(calls.length - before).toBe(1);
    } finally {
      await keys.close();
    }
  });

  it("probes the health service", async () => {
    const keys = await source();
    try {
      healthStatus = "NOT_SERVING";
      await expect(keys.probe()).rejects.toThrow(/is NOT_SERVING/);
      await keys.close();
      await expect(keys.getKey("vol-1", 32)).rejects.toThrow(UnavailableError);
    } finally {
      await keys.close();
    }
  });
});
