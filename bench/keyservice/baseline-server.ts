/**
 * The benchmark's baseline: a bare grpc-js server with the same derivation over the same mutual
 * TLS, and nothing else (no allow-list, audit log, metrics, health or certificate watching).
 * It prints one JSON line with its port, then serves until killed.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { Server, ServerCredentials, status as GrpcStatus, type sendUnaryData, type ServerUnaryCall } from "@grpc/grpc-js";
import { deriveDataKey, masterKeyObject, readKeyMaterial } from "../../lib/data-key.js";
import { loadProto } from "../../lib/proto.js";
import type { GetDataKeyRequest__Output } from "../../proto/gen/cloak/keyservice/v1/GetDataKeyRequest.js";
import type { GetDataKeyResponse } from "../../proto/gen/cloak/keyservice/v1/GetDataKeyResponse.js";
import type { ProtoGrpcType } from "../../proto/gen/keyservice.js";

async function main(): Promise<void> {
  const dir = process.argv[2];
  if (!dir) throw new Error("usage: baseline-server <keys dir>");
  // The same derivation as the service, key object included.
  const master = masterKeyObject(await readKeyMaterial(join(dir, "master-secret"), "master secret"));
  const salt = await readKeyMaterial(join(dir, "salt"), "salt");
  const server = new Server();
  server.addService(loadProto<ProtoGrpcType>("keyservice.proto").cloak.keyservice.v1.KeyService.service, {
    GetDataKey(call: ServerUnaryCall<GetDataKeyRequest__Output, GetDataKeyResponse>, callback: sendUnaryData<GetDataKeyResponse>) {
      try {
        callback(null, { data_key: deriveDataKey(master, salt, call.request.data_key_id, call.request.length) });
      } catch (err) {
        callback({ code: GrpcStatus.INVALID_ARGUMENT, details: (err as Error).message });
      }
    },
  });
  const credentials = ServerCredentials.createSsl(
    await readFile(join(dir, "server/ca.crt")),
    [{ cert_chain: await readFile(join(dir, "server/tls.crt")), private_key: await readFile(join(dir, "server/tls.key")) }],
    true,
  );
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", credentials, (err, p) => (err ? reject(err) : resolve(p))),
  );
  process.stdout.write(`${JSON.stringify({ msg: "baseline ready", port })}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`baseline-server: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
