import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { sendUnaryData, ServerUnaryCall } from "@grpc/grpc-js";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { startGrpcServer, type RunningServer } from "../../lib/grpc-server.js";
import { createLogger } from "../../lib/log.js";
import { loadProto } from "../../lib/proto.js";
import type { ProtoGrpcType as KmsV2Proto } from "../../proto/gen/kms-v2.js";
import { KekUnavailableError } from "./backend.js";
import { createKmsV2Backend } from "./kmsv2.js";

// The client's two ways of meeting a plugin that is not listening yet, against a KMS v2 server
// on a unix socket that appears a moment after the call: the key service's (an answer at once:
// unavailable) and the one-shot commands' (wait for it within the deadline, as a Job's sidecar
// starts beside them).

let dir: string;
let socket: string;
let server: RunningServer | undefined;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "cloak-kmsv2-"));
  socket = join(dir, "kms.sock");
});

afterEach(async () => {
  await server?.stop();
  server = undefined;
  await rm(dir, { recursive: true, force: true });
});

async function servePlugin(): Promise<void> {
  const definition = loadProto<KmsV2Proto>("kms-v2.proto").v2.KeyManagementService.service;
  const status = (_call: ServerUnaryCall<unknown, unknown>, done: sendUnaryData<unknown>): void =>
    done(null, { version: "v2", healthz: "ok", key_id: "kek-1" });
  server = await startGrpcServer({
    endpoint: { kind: "unix", path: socket },
    logger: createLogger({ component: "test", level: "silent" }),
    services: [{ definition, implementation: { Status: status } }],
    drainMs: 100,
  });
}

describe("the KMS v2 client and a plugin that is not listening yet", () => {
  it("answers unavailable at once by default (the key service's way)", async () => {
    const backend = createKmsV2Backend({ endpoint: `unix://${socket}`, timeoutMs: 5_000 });
    try {
      const started = Date.now();
      await expect(backend.status()).rejects.toThrow(KekUnavailableError);
      expect(Date.now() - started).toBeLessThan(4_000);
    } finally {
      backend.close();
    }
  });

  it("with waitForReady, waits within the deadline for the plugin to listen (the commands' way)", async () => {
    const backend = createKmsV2Backend({ endpoint: `unix://${socket}`, timeoutMs: 10_000, waitForReady: true });
    try {
      const answer = backend.status();
      await new Promise((r) => setTimeout(r, 500));
      await servePlugin();
      expect(await answer).toEqual({ healthy: true, healthz: "ok", keyId: "kek-1" });
    } finally {
      backend.close();
    }
  });

  it("with waitForReady, still gives up at the deadline", async () => {
    const backend = createKmsV2Backend({ endpoint: `unix://${socket}`, timeoutMs: 300, waitForReady: true });
    try {
      await expect(backend.status()).rejects.toThrow(/DEADLINE_EXCEEDED/);
    } finally {
      backend.close();
    }
  });
});
