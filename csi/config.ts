import { parseArgs } from "node:util";
import { hostname } from "node:os";
import { InvalidArgumentError } from "../lib/errors.js";
import { parseEndpoint, type Endpoint } from "../lib/grpc-server.js";

export type CsiService = "controller" | "node";

export type KeySourceConfig =
  | { readonly kind: "file"; readonly dir: string }
  /** A wrapper's controller-only process: it never touches a key. */
  | { readonly kind: "none" }
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
  /** Bytes of (sparse) disks promised per byte the volumes directory can hold. */
  readonly overcommitRatio: number;
  /** A volume or snapshot still being created that nobody asked about for this long is removed. */
  readonly abandonCreatingAfterMs: number;
  readonly logLevel: string | undefined;
  /** Wrapper mode (csi/wrap/): the inner driver's socket, and where its per-volume paths go. */
  readonly wrap: { readonly endpoint: Endpoint; readonly innerRoot: string } | undefined;
  /** Where the controller records which volumes carry which key: the Kubernetes API, or nowhere. */
  readonly keyLineage: "kubernetes" | "none";
  /** For keyLineage kubernetes: a kubeconfig, else $KUBECONFIG, else the pod's service account. */
  readonly kubeconfig: string | undefined;
  /** /healthz, /readyz and /metrics over HTTP; off when unset. */
  readonly healthListen: Extract<Endpoint, { kind: "tcp" }> | undefined;
  /** Registration with kubelet (csi/registration/); off when unset. */
  readonly registration: RegistrationConfig | undefined;
  /** How often the key source is probed for readiness. */
  readonly keySourceProbeIntervalMs: number;
}

export interface RegistrationConfig {
  /** kubelet's plugins_registry directory, as this process sees it. */
  readonly dir: string;
  /** The CSI socket's path as kubelet sees it on the node. */
  readonly kubeletEndpoint: string;
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
  --overcommit-ratio R      promise up to R times what the volumes directory can hold
                            (volumes are sparse; default 1.0: never more than fits)
  --abandon-creating-after S  remove a creation nobody retried for S seconds (default 3600)
  --wrap ENDPOINT           put LUKS2 in front of another CSI driver serving block volumes, at
                            ENDPOINT (its node plugin's socket, or its controller's); needs
                            --services node or --services controller (one per process)
  --inner-root DIR          with --wrap (node): where the wrapped driver stages and publishes
                            (default /var/lib/kubelet/plugins/kubernetes.io/csi/<driver-name>/inner)
  --log-level LEVEL         pino level (env LOG_LEVEL; default info)
  --health-listen HOST:PORT /healthz (liveness: the gRPC server answers), /readyz (readiness: the
                            tools, the key source, kubelet's registration) and /metrics over
                            HTTP (default: off; the manifests use 0.0.0.0:9808)
  --registration-dir DIR    register with kubelet through a socket in DIR, kubelet's
                            plugins_registry (default: off; the node DaemonSet sets it)
  --kubelet-endpoint PATH   the CSI socket as kubelet sees it, reported at registration
                            (default /var/lib/kubelet/plugins/<driver name>/csi.sock)
  --key-source-probe-interval SECONDS  how often readiness probes the key source (default 10)
  --version                 print the version and exit
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
      "overcommit-ratio": { type: "string", default: "1.0" },
      "abandon-creating-after": { type: "string", default: "3600" },
      "log-level": { type: "string" },
      wrap: { type: "string" },
      "inner-root": { type: "string" },
      "health-listen": { type: "string", default: "" },
      "registration-dir": { type: "string" },
      "kubelet-endpoint": { type: "string" },
      "key-source-probe-interval": { type: "string", default: "10" },
    },
  });
  const maxVolumes = Number(values["max-volumes-per-node"]);
  if (!Number.isSafeInteger(maxVolumes) || maxVolumes < 0) throw new InvalidArgumentError("--max-volumes-per-node must be a whole number ≥ 0");
  const overcommitRatio = Number(values["overcommit-ratio"]);
  if (!Number.isFinite(overcommitRatio) || overcommitRatio <= 0) throw new InvalidArgumentError("--overcommit-ratio must be a number > 0");
  const abandonAfter = Number(values["abandon-creating-after"]);
  if (!Number.isFinite(abandonAfter) || abandonAfter <= 0) throw new InvalidArgumentError("--abandon-creating-after must be a number of seconds > 0");
  const driverName = values["driver-name"];
  if (!/^[A-Za-z0-9]([A-Za-z0-9.-]{0,61}[A-Za-z0-9])?$/.test(driverName)) {
    throw new InvalidArgumentError(`--driver-name ${JSON.stringify(driverName)} is not a valid CSI driver name`);
  }
  const services = values.services.split(",").map((s) => s.trim()).filter((s) => s !== "");
  const unknownServices = services.filter((s) => s !== "controller" && s !== "node");
  if (services.length === 0 || unknownServices.length > 0) {
    throw new InvalidArgumentError(`--services takes controller and/or node, not ${JSON.stringify(values.services)}`);
  }
  const wrap = wrapConfig(values.wrap, values["inner-root"], services, driverName);
  const keySource = wrap && !services.includes("node") && !values["key-dir"] && !values.keyservice ? ({ kind: "none" } as const) : keySourceConfig(values);
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
    overcommitRatio,
    abandonCreatingAfterMs: abandonAfter * 1000,
    logLevel: values["log-level"],
    wrap,
    keyLineage,
    kubeconfig: values.kubeconfig,
    healthListen: healthListen(values["health-listen"]),
    registration: registrationConfig(values["registration-dir"], values["kubelet-endpoint"], driverName),
    keySourceProbeIntervalMs: probeInterval(values["key-source-probe-interval"]),
  };
}

function wrapConfig(
  endpoint: string | undefined,
  innerRoot: string | undefined,
  services: readonly string[],
  driverName: string,
): CsiConfig["wrap"] {
  if (endpoint === undefined) {
    if (innerRoot !== undefined) throw new InvalidArgumentError("--inner-root needs --wrap");
    return undefined;
  }
  // The inner driver's node socket is on the node, its controller's in the controller's pod:
  // one process cannot reach both.
  if (new Set(services).size !== 1) {
    throw new InvalidArgumentError("--wrap serves one CSI service per process: --services node (on every node) or --services controller (beside the inner controller)");
  }
  const root = innerRoot ?? `/var/lib/kubelet/plugins/kubernetes.io/csi/${driverName}/inner`;
  if (!root.startsWith("/") || root.endsWith("/") || root.split("/").includes("..")) {
    throw new InvalidArgumentError(`--inner-root ${root} must be an absolute, normalised path`);
  }
  return { endpoint: parseEndpoint(endpoint), innerRoot: root };
}

function healthListen(text: string): Extract<Endpoint, { kind: "tcp" }> | undefined {
  if (text === "") return undefined;
  const endpoint = parseEndpoint(text);
  if (endpoint.kind !== "tcp") throw new InvalidArgumentError(`--health-listen takes host:port, not ${JSON.stringify(text)}`);
  return endpoint;
}

function registrationConfig(dir: string | undefined, endpoint: string | undefined, driverName: string): RegistrationConfig | undefined {
  if (dir === undefined) {
    if (endpoint !== undefined) throw new InvalidArgumentError("--kubelet-endpoint needs --registration-dir");
    return undefined;
  }
  if (!dir.startsWith("/")) throw new InvalidArgumentError(`--registration-dir ${dir} must be absolute`);
  const parsed = parseEndpoint(endpoint ?? `/var/lib/kubelet/plugins/${driverName}/csi.sock`);
  if (parsed.kind !== "unix") throw new InvalidArgumentError(`--kubelet-endpoint must be a unix socket path, not ${JSON.stringify(endpoint)}`);
  return { dir, kubeletEndpoint: parsed.path };
}

function probeInterval(text: string): number {
  const seconds = Number(text);
  if (!Number.isFinite(seconds) || seconds < 0.1 || seconds > 3600) {
    throw new InvalidArgumentError("--key-source-probe-interval takes seconds between 0.1 and 3600");
  }
  return Math.round(seconds * 1000);
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
