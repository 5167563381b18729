import { parseArgs } from "node:util";
import { hostname } from "node:os";
import { InvalidArgumentError } from "../lib/errors.js";
import { parseEndpoint, type Endpoint } from "../lib/grpc-server.js";

export type CsiService = "controller" | "node";

export type KeySourceConfig =
  | { readonly kind: "file"; readonly dir: string }
  | {
      readonly kind: "keyservice";
      readonly target: string;
      readonly caFile: string;
      readonly certFile: string;
      readonly keyFile: string;
      readonly serverName: string | undefined;
      /** The projected service-account token (audience: the key service) sent with each request. */
      readonly tokenFile: string | undefined;
    };

export interface CsiConfig {
  readonly endpoint: Endpoint;
  /** Which CSI services this process serves (Identity always). */
  readonly services: readonly CsiService[];
  readonly driverName: string;
  readonly nodeId: string;
  readonly volumesDir: string;
  readonly keySource: KeySourceConfig;
  readonly allowedPathRoots: readonly string[];
  readonly maxVolumesPerNode: number;
  readonly bypassWorkqueues: boolean;
  readonly logLevel: string | undefined;
  /** Where the controller records which volumes carry which key: the Kubernetes API, or nowhere. */
  readonly keyLineage: "kubernetes" | "none";
  /** For keyLineage kubernetes: a kubeconfig, else $KUBECONFIG, else the pod's service account. */
  readonly kubeconfig: string | undefined;
}

export const CSI_USAGE = `usage: cloak csi [options]

  --endpoint URL            gRPC endpoint (env CSI_ENDPOINT; default unix:///csi/csi.sock)
  --services LIST           controller,node (default: both, the local disk source's layout)
  --driver-name NAME        the CSI driver name (default csi.cloak.dev)
  --node-id ID              this node's id (env NODE_ID, then NODE_NAME; default the hostname)
  --volumes-dir DIR         where the local disk source keeps volumes (default /var/lib/cloak/volumes)
  --key-dir DIR             file key source (development): directory with master-secret and salt
  --keyservice TARGET       key service source: host:port of the cloak key service
  --keyservice-ca FILE      CA certificate the key service's certificate chains to
  --keyservice-cert FILE    this node's client certificate
  --keyservice-key FILE     this node's client key
  --keyservice-server-name NAME  name expected in the service's certificate (default: the host)
  --keyservice-token FILE   a projected service-account token for the key service, sent with each
                            request and re-read as kubelet renews it
  --key-lineage MODE        kubernetes: the controller records each key's volumes and snapshots as
                            CloakKey objects (what the key service authorises by); none (default)
  --kubeconfig FILE         API access for --key-lineage kubernetes (default $KUBECONFIG, then in-cluster)
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
      services: { type: "string", default: "controller,node" },
      "driver-name": { type: "string", default: "csi.cloak.dev" },
      "node-id": { type: "string" },
      "volumes-dir": { type: "string", default: "/var/lib/cloak/volumes" },
      "key-dir": { type: "string" },
      keyservice: { type: "string" },
      "keyservice-ca": { type: "string" },
      "keyservice-cert": { type: "string" },
      "keyservice-key": { type: "string" },
      "keyservice-server-name": { type: "string" },
      "keyservice-token": { type: "string" },
      "key-lineage": { type: "string", default: "none" },
      kubeconfig: { type: "string" },
      "allowed-path-root": { type: "string", multiple: true },
      "max-volumes-per-node": { type: "string", default: "0" },
      "bypass-workqueues": { type: "boolean", default: false },
      "log-level": { type: "string" },
    },
  });
  const keySource = keySourceConfig(values);
  const maxVolumes = Number(values["max-volumes-per-node"]);
  if (!Number.isSafeInteger(maxVolumes) || maxVolumes < 0) throw new InvalidArgumentError("--max-volumes-per-node must be a whole number ≥ 0");
  const driverName = values["driver-name"];
  if (!/^[A-Za-z0-9]([A-Za-z0-9.-]{0,61}[A-Za-z0-9])?$/.test(driverName)) {
    throw new InvalidArgumentError(`--driver-name ${JSON.stringify(driverName)} is not a valid CSI driver name`);
  }
  const services = values.services.split(",").map((s) => s.trim()).filter((s) => s !== "");
  const unknownServices = services.filter((s) => s !== "controller" && s !== "node");
  if (services.length === 0 || unknownServices.length > 0) {
    throw new InvalidArgumentError(`--services takes controller and/or node, not ${JSON.stringify(values.services)}`);
  }
  const keyLineage = values["key-lineage"];
  if (keyLineage !== "kubernetes" && keyLineage !== "none") throw new InvalidArgumentError(`--key-lineage takes kubernetes or none, not ${JSON.stringify(keyLineage)}`);
  const roots = values["allowed-path-root"] ?? ["/var/lib/kubelet"];
  for (const root of roots) {
    if (!root.startsWith("/")) throw new InvalidArgumentError(`--allowed-path-root ${root} must be absolute`);
  }
  return {
    endpoint: parseEndpoint(values.endpoint ?? env["CSI_ENDPOINT"] ?? "unix:///csi/csi.sock"),
    services: [...new Set(services)] as CsiService[],
    driverName,
    nodeId: values["node-id"] ?? env["NODE_ID"] ?? env["NODE_NAME"] ?? hostname(),
    volumesDir: values["volumes-dir"],
    keySource,
    allowedPathRoots: roots,
    maxVolumesPerNode: maxVolumes,
    bypassWorkqueues: values["bypass-workqueues"],
    logLevel: values["log-level"],
    keyLineage,
    kubeconfig: values.kubeconfig,
  };
}

function keySourceConfig(values: {
  "key-dir"?: string | undefined;
  keyservice?: string | undefined;
  "keyservice-ca"?: string | undefined;
  "keyservice-cert"?: string | undefined;
  "keyservice-key"?: string | undefined;
  "keyservice-server-name"?: string | undefined;
  "keyservice-token"?: string | undefined;
}): KeySourceConfig {
  const dir = values["key-dir"];
  const target = values.keyservice;
  if (dir && target) throw new InvalidArgumentError("choose one key source: --key-dir or --keyservice");
  if (dir) {
    if (values["keyservice-token"]) throw new InvalidArgumentError("--keyservice-token is for the key service source, not --key-dir");
    return { kind: "file", dir };
  }
  if (!target) throw new InvalidArgumentError("a key source is required: --keyservice host:port (or --key-dir DIR for development)");
  const caFile = values["keyservice-ca"];
  const certFile = values["keyservice-cert"];
  const keyFile = values["keyservice-key"];
  if (!caFile || !certFile || !keyFile) {
    throw new InvalidArgumentError("--keyservice needs --keyservice-ca, --keyservice-cert and --keyservice-key (mutual TLS)");
  }
  return { kind: "keyservice", target, caFile, certFile, keyFile, serverName: values["keyservice-server-name"], tokenFile: values["keyservice-token"] };
}
