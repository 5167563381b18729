import { Client, credentials } from "@grpc/grpc-js";
import { loadProto } from "../../lib/proto.js";
import type { ProtoGrpcType } from "../../proto/gen/csi.js";
import type { ControllerDefinition } from "../../proto/gen/csi/v1/Controller.js";
import type { IdentityDefinition } from "../../proto/gen/csi/v1/Identity.js";
import type { NodeDefinition } from "../../proto/gen/csi/v1/Node.js";
import { unaryCaller, type UnaryCaller } from "./grpc-call.js";

export interface CsiClient {
  readonly identity: UnaryCaller<IdentityDefinition>;
  readonly node: UnaryCaller<NodeDefinition>;
  readonly controller: UnaryCaller<ControllerDefinition>;
  close(): void;
}

/** A CSI client on a unix socket, connected the way kubelet and the sidecars connect. */
export function connectCsi(socketPath: string): CsiClient {
  const csi = loadProto<ProtoGrpcType>("csi.proto").csi.v1;
  const client = new Client(`unix://${socketPath}`, credentials.createInsecure());
  return {
    identity: unaryCaller(client, csi.Identity.service),
    node: unaryCaller(client, csi.Node.service),
    controller: unaryCaller(client, csi.Controller.service),
    close: () => client.close(),
  };
}
