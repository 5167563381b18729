import { parseArgs } from "node:util";
import { hostname } from "node:os";
import { InvalidArgumentError } from "../lib/errors.js";
import { parseEndpoint, type Endpoint } from "../lib/grpc-server.js";

export interface CsiConfig {
  readonly endpoint: Endpoint;
  readonly driverName: string;
  readonly nodeId: string;
  readonly volumesDir: string;
  readonly keySource: { readonly kind: "file"; readonly dir: string };
  readonly allowedPathRoots: readonly string[];
  readonly maxVolumesPerNode: number;
  readonly bypassWorkqueues: boolean;
  readonly logLevel: string | undefined;
}

export const CSI_USAGE = `usage: cloak csi [options]

  --endpoint URL            gRPC endpoint (env CSI_ENDPOINT; default unix:///csi/csi.sock)
  --driver-name NAME        the CSI driver name (default csi.cloak.dev)
  --node-id ID              this node's id (env NODE_ID, then NODE_NAME; default the hostname)
  --volumes-dir DIR         where the local disk source keeps volumes (default /var/lib/cloak/volumes)
  --key-dir DIR             file key source: directory with master-secret and salt
  --allowed-path-root DIR   staging/target paths must be below DIR; repeatable
                            (default /var/lib/kubelet)
  --max-volumes-per-node N  reported to the CO; 0 = no limit (default 0)
  --bypass-workqueues       open dm-crypt with no_read_workqueue/no_write_workqueue
  --log-level LEVEL         pino level (env LOG_LEVEL; default info)
`;

/** Flags and environment → configuration. Pure, so that every default is tested. */
export function parseCsiConfig(argv: readonly string[], env: Readonly<Record<string, string | undefined>>): CsiConfig {
  const { values } = parseArgs({
    args: [...argv],
    strict: true,
    options: {
      endpoint: { type: "string" },
      "driver-name": { type: "string", default: "csi.cloak.dev" },
      "node-id": { type: "string" },
      "volumes-dir": { type: "string", default: "/var/lib/cloak/volumes" },
      "key-dir": { type: "string" },
      "allowed-path-root": { type: "string", multiple: true },
      "max-volumes-per-node": { type: "string", default: "0" },
      "bypass-workqueues": { type: "boolean", default: false },
      "log-level": { type: "string" },
    },
  });
  const keyDir = values["key-dir"];
  if (!keyDir) throw new InvalidArgumentError("a key source is required: --key-dir DIR");
  const maxVolumes = Number(values["max-volumes-per-node"]);
  if (!Number.isSafeInteger(maxVolumes) || maxVolumes < 0) throw new InvalidArgumentError("--max-volumes-per-node must be a whole number ≥ 0");
  const driverName = values["driver-name"];
  if (!/^[A-Za-z0-9]([A-Za-z0-9.-]{0,61}[A-Za-z0-9])?$/.test(driverName)) {
    throw new InvalidArgumentError(`--driver-name ${JSON.stringify(driverName)} is not a valid CSI driver name`);
  }
  const roots = values["allowed-path-root"] ?? ["/var/lib/kubelet"];
  for (const root of roots) {
    if (!root.startsWith("/")) throw new InvalidArgumentError(`--allowed-path-root ${root} must be absolute`);
  }
  return {
    endpoint: parseEndpoint(values.endpoint ?? env["CSI_ENDPOINT"] ?? "unix:///csi/csi.sock"),
    driverName,
    nodeId: values["node-id"] ?? env["NODE_ID"] ?? env["NODE_NAME"] ?? hostname(),
    volumesDir: values["volumes-dir"],
    keySource: { kind: "file", dir: keyDir },
    allowedPathRoots: roots,
    maxVolumesPerNode: maxVolumes,
    bypassWorkqueues: values["bypass-workqueues"],
    logLevel: values["log-level"],
  };
}
