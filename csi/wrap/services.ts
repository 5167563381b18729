import type { Runner } from "../../lib/exec.js";
import { formatEndpoint, type Endpoint, type Stoppable } from "../../lib/grpc-server.js";
import type { AsyncHandlers } from "../../lib/grpc-handler.js";
import type { Logger } from "../../lib/log.js";
import type { ProtoGrpcType } from "../../proto/gen/csi.js";
import type { ControllerDefinition, ControllerHandlers } from "../../proto/gen/csi/v1/Controller.js";
import type { IdentityHandlers } from "../../proto/gen/csi/v1/Identity.js";
import type { NodeDefinition } from "../../proto/gen/csi/v1/Node.js";
import type { NodeDiskSource } from "../disk/disk-source.js";
import { createWrapControllerService } from "./controller-service.js";
import { wrapIdentity } from "./identity.js";
import type { KeyLineage } from "../keys/lineage.js";
import { InnerDriver } from "./inner-driver.js";
import { wrapKeyBinding } from "./key-binding.js";
import { createWrapNodeSource } from "./node-source.js";
import { withRawMessages } from "./raw-messages.js";

export interface WrapServicesOptions {
  /** The inner driver's socket. */
  readonly endpoint: Endpoint;
  readonly innerRoot: string;
  readonly csi: ProtoGrpcType["csi"]["v1"];
  readonly run: Runner;
  readonly log: Logger;
  /** How long the inner node's capabilities are cached (tests: 0). */
  readonly capabilitiesTtlMs?: number;
}

/** What csi/main.ts puts in place of the local pieces in wrapper mode. */
export interface WrapServices extends Stoppable {
  /** For the startup line: "wrap unix:///...". */
  readonly describe: string;
  identity(base: AsyncHandlers<IdentityHandlers>): AsyncHandlers<IdentityHandlers>;
  /** Definitions that hand handlers their requests' bytes and send responses as given. */
  readonly controllerDefinition: ControllerDefinition;
  readonly nodeDefinition: NodeDefinition;
  /** The controller, recording key ids in `lineage` under cloak's `driver` name. */
  controller(keys: { lineage: KeyLineage; driver: string }): AsyncHandlers<ControllerHandlers>;
  nodeSource(): NodeDiskSource;
}

/** The wrapper's pieces, over one long-lived channel to the inner driver. */
export function wrapServices(options: WrapServicesOptions): WrapServices {
  const { csi, log } = options;
  const inner = new InnerDriver(options.endpoint, log.child({ scope: "inner" }));
  return {
    describe: `wrap ${formatEndpoint(options.endpoint)}`,
    identity: (base) => wrapIdentity(base, { inner, definition: csi.Identity.service }),
    controllerDefinition: withRawMessages(csi.Controller.service),
    nodeDefinition: withRawMessages(csi.Node.service),
    controller: (keys) => createWrapControllerService({ inner, definition: csi.Controller.service, keys: wrapKeyBinding(keys), log }),
    nodeSource: () => createWrapNodeSource({ inner, definition: csi.Node.service, root: options.innerRoot, run: options.run, log, capabilitiesTtlMs: options.capabilitiesTtlMs }),
    stop: async () => inner.close(),
  };
}
