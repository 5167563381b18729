/**
 * The plain baseline's server process (see plain-stage.ts), started by the storage benchmark
 * beside cloak's plugin: `node plain-node.js --endpoint unix://... --volumes-dir D
 * --allowed-path-root K`. Logs like the plugin at debug level, so that its stages can be
 * broken down the same way.
 */
import { parseArgs } from "node:util";
import { createRunner } from "../../lib/exec.js";
import { toGrpcHandlers } from "../../lib/grpc-handler.js";
import { parseEndpoint, startGrpcServer, stopOnSignals } from "../../lib/grpc-server.js";
import { createLogger } from "../../lib/log.js";
import { loadProto } from "../../lib/proto.js";
import type { ProtoGrpcType } from "../../proto/gen/csi.js";
import type { IdentityHandlers } from "../../proto/gen/csi/v1/Identity.js";
import type { NodeHandlers } from "../../proto/gen/csi/v1/Node.js";
import { createLocalNodeSource } from "../../csi/disk/local/node-source.js";
import { createPlainIdentityService, createPlainNodeService } from "./plain-stage.js";

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      endpoint: { type: "string" },
      "volumes-dir": { type: "string" },
      "allowed-path-root": { type: "string" },
      "log-level": { type: "string", default: "debug" },
    },
  });
  const endpoint = values.endpoint;
  const volumesDir = values["volumes-dir"];
  const root = values["allowed-path-root"];
  if (!endpoint || !volumesDir || !root) throw new Error("usage: plain-node --endpoint unix://PATH --volumes-dir DIR --allowed-path-root DIR");
  const log = createLogger({ component: "plain-baseline", level: values["log-level"] });
  const run = createRunner({ logger: log.child({ scope: "exec" }) });
  const csi = loadProto<ProtoGrpcType>("csi.proto").csi.v1;
  const node = createPlainNodeService({ run, disks: createLocalNodeSource({ dir: volumesDir, run }), allowedPathRoots: [root] });
  const server = await startGrpcServer({
    endpoint: parseEndpoint(endpoint),
    logger: log,
    services: [
      { definition: csi.Identity.service, implementation: toGrpcHandlers<IdentityHandlers>("csi.v1.Identity", csi.Identity.service, createPlainIdentityService(), log) },
      { definition: csi.Node.service, implementation: toGrpcHandlers<NodeHandlers>("csi.v1.Node", csi.Node.service, node, log) },
    ],
  });
  stopOnSignals([server], log);
}

main().catch((err: unknown) => {
  process.stderr.write(`plain-node: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
