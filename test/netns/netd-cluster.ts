import { CoreV1Api, PatchStrategy, setHeaderOptions, type V1Node } from "@kubernetes/client-node";
import { NODE_COMPILE_CACHE, scaled } from "./timing.js";
import { NODE_OPTIONS } from "../../netd/config.js";
import { waitFor } from "../support/wait.js";
import { mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { packageRoot } from "../../lib/paths.js";
import * as wg from "../../netd/tools/wg.js";
import * as ip from "../../netd/tools/ip.js";
import type { ApiServer } from "../apiserver/apiserver.js";
import { Daemon } from "./daemon.js";
import type { Testbed, TestNode } from "./testbed.js";

/**
 * netd on a netns testbed against a real API server: Node objects made by the test (no
 * kubelet), one netd per node namespace, and the means to look at what each one did.
 * Shared by the host tier (wireguard-go), the VM tier (kernel WireGuard) and benchmarks.
 */

export interface NetdClusterOptions {
  readonly testbed: Testbed;
  readonly api: ApiServer;
  /** State dirs (keys), logs, kubeconfig. */
  readonly dir: string;
  readonly implementation: "kernel" | "userspace";
  /** Flags every netd gets (per-node flags can be added in startNetd). */
  readonly flags?: readonly string[];
}

export const WG_PORT = 51872;
/** netd's default routing table. */
export const ROUTE_TABLE = 51872;
export const NETD_USER = "cloak-netd";

export class NetdCluster {
  readonly core: CoreV1Api;
  private kubeconfig = "";
  private readonly netds = new Map<string, Daemon>();
  private starts = 0;

  constructor(readonly o: NetdClusterOptions) {
    this.core = o.api.adminClient.makeApiClient(CoreV1Api);
  }

  /** RBAC for netd exactly as the manifests grant it: nodes get/list/watch/patch, nothing else. */
  async init(): Promise<void> {
    await mkdir(this.o.dir, { recursive: true });
    await this.o.api.grantClusterRole({
      name: "cloak-netd-test",
      user: NETD_USER,
      rules: [{ apiGroups: [""], resources: ["nodes"], verbs: ["get", "list", "watch", "patch"] }],
    });
    this.kubeconfig = await this.o.api.userKubeconfig({ user: NETD_USER, server: this.o.api.url });
  }

  /** The interface name on a node: distinct per node, since wireguard-go's sockets are shared. */
  iface(node: TestNode): string {
    return `cndwg-${node.name}`;
  }

  stateDir(node: TestNode): string {
    return join(this.o.dir, node.name);
  }

  async createNode(node: TestNode, podCIDRs: readonly string[] = [node.podCIDR4, node.podCIDR6]): Promise<void> {
    await this.core.createNode({ body: { metadata: { name: node.name }, spec: { podCIDR: podCIDRs[0], podCIDRs: [...podCIDRs] } } });
    await this.core.patchNodeStatus(
      {
        name: node.name,
        body: {
          status: {
            addresses: [
              { type: "InternalIP", address: node.underlay4 },
              { type: "InternalIP", address: node.underlay6 },
              { type: "Hostname", address: node.name },
            ],
          },
        },
      },
      setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
    );
  }

  async deleteNode(name: string): Promise<void> {
    await this.core.deleteNode({ name });
    // Deletion is immediate without finalizers; wait until a get says so.
    await waitFor(`node ${name} deleted`, async () => {
      try {
        await this.core.readNode({ name });
        return false;
      } catch {
        return true;
      }
    }, scaled(10_000));
  }

  async readNode(name: string): Promise<V1Node> {
    return this.core.readNode({ name });
  }

  async startNetd(node: TestNode, flags: readonly string[] = []): Promise<Daemon> {
    const existing = this.netds.get(node.name);
    if (existing?.running) throw new Error(`netd already runs on ${node.name}`);
    const d = new Daemon({
      name: `netd-${node.name}`,
      netns: node.ns,
      logFile: join(this.o.dir, `netd-${node.name}.log`),
      env: { LOG_LEVEL: "debug", NODE_OPTIONS, ...NODE_COMPILE_CACHE },
      argv: [
        process.execPath,
        join(packageRoot(), "dist/cmd/cloak.js"),
        "netd",
        "run",
        `--node-name=${node.name}`,
        `--kubeconfig=${this.kubeconfig}`,
        `--interface=${this.iface(node)}`,
        `--state-dir=${this.stateDir(node)}`,
        `--implementation=${this.o.implementation}`,
        "--resync-interval=5",
        ...(this.o.flags ?? []),
        ...flags,
      ],
    });
    this.starts++;
    this.netds.set(node.name, d);
    await d.waitForOutput((out) => out.includes("serving /healthz"), scaled(30_000));
    return d;
  }

  netd(node: TestNode): Daemon | undefined {
    return this.netds.get(node.name);
  }

  /** SIGKILL by default: a crash, the harshest way a restart happens. */
  async stopNetd(node: TestNode, signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
    await this.netds.get(node.name)?.stop(signal);
  }

  async device(node: TestNode): Promise<wg.LiveDevice> {
    const r = await this.o.testbed.exec(node.ns, ["wg", "show", this.iface(node), "dump"], { timeoutMs: scaled(30_000) });
    return wg.parseDump(r.stdout);
  }

  async routes(node: TestNode, table = ROUTE_TABLE): Promise<ip.LiveRoute[]> {
    const v4 = await this.o.testbed.exec(node.ns, ["ip", "-j", "-4", "route", "show", "table", String(table)], { okExitCodes: [2] });
    const v6 = await this.o.testbed.exec(node.ns, ["ip", "-j", "-6", "route", "show", "table", String(table)], { okExitCodes: [2] });
    return [...ip.parseRouteShow(v4), ...ip.parseRouteShow(v6)];
  }

  async privateKeyFile(node: TestNode): Promise<string> {
    return (await readFile(join(this.stateDir(node), "private.key"), "utf8")).trim();
  }

  /** Waits until `node`'s interface has exactly `expected` peers' allowed-ips (node name → prefixes). */
  async waitForPeers(node: TestNode, expected: Record<string, readonly string[]>, timeoutMs = scaled(20_000)): Promise<wg.LiveDevice> {
    const want = Object.values(expected).map((l) => [...l].sort().join(",")).sort();
    let last: wg.LiveDevice | undefined;
    await waitFor(
      () => `peers on ${node.name}: want ${JSON.stringify(want)}, have ${JSON.stringify(last?.peers.map((p) => p.allowedIPs))}`,
      async () => {
        last = await this.device(node);
        const got = last.peers.map((p) => [...p.allowedIPs].sort().join(",")).sort();
        return JSON.stringify(got) === JSON.stringify(want);
      },
      timeoutMs,
    );
    return last as wg.LiveDevice;
  }

  async stopAll(): Promise<void> {
    for (const d of this.netds.values()) await d.stop("SIGKILL");
  }
}
