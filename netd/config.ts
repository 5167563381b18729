import { parseArgs } from "node:util";
import { join } from "node:path";
import { InvalidArgumentError } from "../lib/errors.js";
import { isPrefix, type Family } from "./cidr.js";

/**
 * netd's settings: flags, with NODE_NAME from the environment (the downward API). Defaults
 * are chosen not to collide with the other meshes a cluster may run: Cilium's 51871 and
 * `cilium_wg0`, Calico's, flannel's and Kilo's 51820/51821.
 */
export interface NetdConfig {
  readonly nodeName: string;
  /** undefined: in-cluster config (the service account), else this kubeconfig file. */
  readonly kubeconfig: string | undefined;
  readonly iface: string;
  readonly listenPort: number;
  readonly stateDir: string;
  readonly keyFile: string;
  /** undefined: underlay MTU minus the overhead. */
  readonly mtu: number | undefined;
  /** undefined: by the family of the peers' endpoints (mtuOverheadFor). */
  readonly mtuOverhead: number | undefined;
  readonly implementation: "auto" | "kernel" | "userspace";
  readonly wireguardGo: string;
  readonly table: number;
  readonly rulePriority: number;
  readonly fwmark: number;
  readonly fwmask: number;
  readonly nodeEncryption: boolean;
  /** Drop plain-text traffic to and from remote pods (nftables); on unless --no-strict. */
  readonly strict: boolean;
  /** The cluster's pod ranges: strict mode protects them from the start, before any Node is read. */
  readonly clusterCIDRs: readonly string[];
  /** undefined: the family of this node's first InternalIP. */
  readonly endpointFamily: Family | undefined;
  readonly persistentKeepalive: number | undefined;
  readonly resyncIntervalMs: number;
  /** host:port for /healthz, /metrics and /status; "" turns the server off. */
  readonly metricsAddress: string;
  /** Whether --metrics-address was given (else `status` asks the running agent's state dir). */
  readonly metricsAddressGiven: boolean;
  readonly nftTable: string;
}

/**
 * What WireGuard adds to each packet, by the family of the outer (endpoint) header: IPv4 20 or
 * IPv6 40, + UDP 8 + WireGuard's data header 16 + the Poly1305 tag 16. WireGuard pads the
 * plaintext to 16 bytes but never past the interface MTU, so padding adds nothing: the host
 * tier (IPv6 endpoints) and the VM tier (IPv4) each measure a full-size inner packet leaving
 * as exactly an underlay-sized outer one.
 */
export const MTU_OVERHEAD = { 4: 60, 6: 80 } as const;

export const DEFAULTS = {
  iface: "cloak-wg0",
  listenPort: 51872,
  stateDir: "/var/lib/cloak/netd",
  table: 51872,
  rulePriority: 5172,
  fwmark: 0xc10000,
  fwmask: 0xff0000,
  resyncIntervalMs: 30_000,
  metricsPort: 9478,
  nftTable: "cloak-netd",
  wireguardGo: "wireguard-go",
} as const;

/**
 * The V8 flags netd runs with: the DaemonSet sets them as NODE_OPTIONS, and the test harness
 * and bench-netd run netd with them too. A 4 MiB young generation instead of V8's 16 MiB:
 * netd allocates in bursts (a list and a full program at thousands of nodes) and V8 keeps the
 * young generation it has grown. bench-netd at 5 000 nodes: peak RSS 303–373 MB with 16 MiB,
 * 285–305 MB with 4, 237–240 MB with 1; but at 1 MiB the extra scavenges made a Node event's peer
 * take 120 ms instead of 60–70. 4 keeps the change fast and saves what it can.
 */
export const NODE_OPTIONS = "--max-semi-space-size=4";

/**
 * Set by `netd run` itself (Node does not take it in NODE_OPTIONS): V8's memory-over-speed
 * mode, whose heap grows less between collections. At 5 000 nodes netd's live heap is about
 * 25 MB while the default let it reach 75 MB of mostly garbage before a full collection
 * (BENCHMARKS.md, netd: peak RSS).
 */
export const V8_FLAGS = "--optimize-for-size";

export const USAGE = `usage: cloak netd <command> [flags]

commands:
  run          run the agent (the DaemonSet's container)
  status       print the running agent's peer table
  rotate-key   replace this node's key (signals the running agent, else rewrites the key file)
  cleanup      remove everything netd added on this node (uninstall); --purge also deletes the key

flags (all commands take them; defaults in brackets):
  --node-name NAME            this node [$NODE_NAME]
  --kubeconfig PATH           kubeconfig file [in-cluster service account]
  --interface NAME            WireGuard interface [${DEFAULTS.iface}]
  --port N                    WireGuard listen port [${DEFAULTS.listenPort}]
  --state-dir DIR             where the private key lives (a hostPath) [${DEFAULTS.stateDir}]
  --key-file PATH             private key file [<state-dir>/private.key]
  --mtu N                     interface MTU [underlay MTU - overhead]
  --mtu-overhead N            bytes WireGuard adds [${MTU_OVERHEAD[4]} with IPv4 endpoints, ${MTU_OVERHEAD[6]} with IPv6]
  --implementation auto|kernel|userspace   [auto: kernel module if present, else wireguard-go]
  --wireguard-go PATH         the userspace implementation [${DEFAULTS.wireguardGo}]
  --table N                   routing table for tunnelled prefixes [${DEFAULTS.table}]
  --rule-priority N           priority of netd's ip rules [${DEFAULTS.rulePriority}]
  --fwmark N --fwmark-mask N  mark on WireGuard's own packets [0x${DEFAULTS.fwmark.toString(16)}/0x${DEFAULTS.fwmask.toString(16)}]
  --node-encryption           also encrypt node-to-node traffic (peers' InternalIPs)
  --no-strict                 do not drop plain-text traffic to and from remote pods [strict: on]
  --cluster-cidr CIDR[,CIDR]  the cluster's pod ranges, dropped from the start (repeatable)
  --endpoint-family ipv4|ipv6 which InternalIP is a peer's endpoint [this node's first]
  --persistent-keepalive N    seconds [off]
  --resync-interval SECONDS   full compare with the live state [${DEFAULTS.resyncIntervalMs / 1000}]
  --metrics-address HOST:PORT /healthz, /metrics, /status; "" disables [$NODE_IP:${DEFAULTS.metricsPort}, else 127.0.0.1:${DEFAULTS.metricsPort}]
  --nft-table NAME            nftables table (inet) for strict mode [${DEFAULTS.nftTable}]
  --purge                     cleanup: also delete the key file and the Node annotations
`;

export interface ParsedCommand {
  readonly command: string;
  readonly config: NetdConfig;
  readonly purge: boolean;
}

export function parseCommand(argv: readonly string[], env: NodeJS.ProcessEnv): ParsedCommand {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals: true,
      allowNegative: true,
      options: {
        "node-name": { type: "string" },
        kubeconfig: { type: "string" },
        interface: { type: "string" },
        port: { type: "string" },
        "state-dir": { type: "string" },
        "key-file": { type: "string" },
        mtu: { type: "string" },
        "mtu-overhead": { type: "string" },
        implementation: { type: "string" },
        "wireguard-go": { type: "string" },
        table: { type: "string" },
        "rule-priority": { type: "string" },
        fwmark: { type: "string" },
        "fwmark-mask": { type: "string" },
        "node-encryption": { type: "boolean" },
        strict: { type: "boolean" },
        "cluster-cidr": { type: "string", multiple: true },
        "endpoint-family": { type: "string" },
        "persistent-keepalive": { type: "string" },
        "resync-interval": { type: "string" },
        "metrics-address": { type: "string" },
        "nft-table": { type: "string" },
        purge: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
  const v = parsed.values;
  const command = v.help ? "help" : (parsed.positionals[0] ?? "help");
  if (parsed.positionals.length > 1) throw new InvalidArgumentError(`unexpected argument ${JSON.stringify(parsed.positionals[1])}`);
  const stateDir = v["state-dir"] ?? DEFAULTS.stateDir;
  const implementation = v.implementation ?? "auto";
  if (implementation !== "auto" && implementation !== "kernel" && implementation !== "userspace") {
    throw new InvalidArgumentError(`--implementation must be auto, kernel or userspace, not ${JSON.stringify(implementation)}`);
  }
  const family = v["endpoint-family"];
  if (family !== undefined && family !== "ipv4" && family !== "ipv6") {
    throw new InvalidArgumentError(`--endpoint-family must be ipv4 or ipv6, not ${JSON.stringify(family)}`);
  }
  const clusterCIDRs = (v["cluster-cidr"] ?? []).flatMap((list) => list.split(",")).map((c) => c.trim()).filter(Boolean);
  for (const c of clusterCIDRs) if (!isPrefix(c)) throw new InvalidArgumentError(`--cluster-cidr ${JSON.stringify(c)} is not a prefix`);
  const iface = v.interface ?? DEFAULTS.iface;
  if (!/^[A-Za-z0-9_.-]{1,15}$/.test(iface)) throw new InvalidArgumentError(`--interface ${JSON.stringify(iface)} is not a valid link name`);
  const config: NetdConfig = {
    nodeName: v["node-name"] ?? env["NODE_NAME"] ?? "",
    kubeconfig: v.kubeconfig ?? env["KUBECONFIG"],
    iface,
    listenPort: int(v.port, DEFAULTS.listenPort, "--port", 1, 65535),
    stateDir,
    keyFile: v["key-file"] ?? join(stateDir, "private.key"),
    mtu: v.mtu === undefined ? undefined : int(v.mtu, 0, "--mtu", 1280, 65535),
    mtuOverhead: v["mtu-overhead"] === undefined ? undefined : int(v["mtu-overhead"], 0, "--mtu-overhead", 0, 200),
    implementation,
    wireguardGo: v["wireguard-go"] ?? DEFAULTS.wireguardGo,
    table: int(v.table, DEFAULTS.table, "--table", 1, 0xfffffffe),
    rulePriority: int(v["rule-priority"], DEFAULTS.rulePriority, "--rule-priority", 1, 32765),
    fwmark: int(v.fwmark, DEFAULTS.fwmark, "--fwmark", 1, 0xffffffff),
    fwmask: int(v["fwmark-mask"], DEFAULTS.fwmask, "--fwmark-mask", 1, 0xffffffff),
    nodeEncryption: v["node-encryption"] ?? false,
    strict: v.strict ?? true,
    clusterCIDRs,
    endpointFamily: family === undefined ? undefined : family === "ipv4" ? 4 : 6,
    persistentKeepalive: v["persistent-keepalive"] === undefined ? undefined : int(v["persistent-keepalive"], 0, "--persistent-keepalive", 1, 65535),
    resyncIntervalMs: int(v["resync-interval"], DEFAULTS.resyncIntervalMs / 1000, "--resync-interval", 1, 86400) * 1000,
    metricsAddress: v["metrics-address"] ?? defaultMetricsAddress(env),
    metricsAddressGiven: v["metrics-address"] !== undefined,
    nftTable: v["nft-table"] ?? DEFAULTS.nftTable,
  };
  if ((config.fwmark & config.fwmask) !== config.fwmark) {
    throw new InvalidArgumentError("--fwmark has bits outside --fwmark-mask");
  }
  return { command, config, purge: v.purge ?? false };
}

/**
 * The node's own address (the DaemonSet passes status.hostIP as NODE_IP), so that the metrics
 * port is reachable by Prometheus and the kubelet's probes but not on every interface of the
 * host; loopback without it.
 */
export function defaultMetricsAddress(env: NodeJS.ProcessEnv): string {
  const ip = env["NODE_IP"]?.trim();
  const host = ip ? (ip.includes(":") ? `[${ip}]` : ip) : "127.0.0.1";
  return `${host}:${DEFAULTS.metricsPort}`;
}

function int(text: string | undefined, fallback: number, flag: string, min: number, max: number): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!Number.isInteger(n) || n < min || n > max) throw new InvalidArgumentError(`${flag} must be an integer from ${min} to ${max}, not ${JSON.stringify(text)}`);
  return n;
}
