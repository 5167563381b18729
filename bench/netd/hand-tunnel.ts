import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Runner } from "../../lib/exec.js";
import { generateKeyPair } from "../../netd/keys.js";
import * as wg from "../../netd/tools/wg.js";
import type { Testbed, TestNode } from "../../test/netns/testbed.js";

/**
 * The baseline for netd's tunnel: WireGuard between two nodes configured by hand, the way a
 * careful operator would with `wg` and `ip` (the same implementation netd uses, its own keys,
 * port and routing table, an MTU chosen by the caller), and a switch that steers pod traffic
 * through the plain underlay, netd's tunnel or this one without touching netd's configuration:
 *
 *   plain  rule `priority 100 to <peer pod CIDRs> lookup main` (the testbed's kubenet routes)
 *   netd   no rule of ours: netd's own rule and table apply
 *   hand   rule `priority 100 to <peer pod CIDRs> lookup <table>`, routes there via this tunnel
 *
 * netd manages only the rules that point at its table, so it leaves these alone. Each path
 * also sets the pods' veth MTU to the path's MTU, as a CNI sets a pod's MTU to its tunnel's, so
 * that no run depends on path-MTU state (ICMP "fragmentation needed" caches) left by another.
 */
export type Path = "plain" | "netd" | "hand";

export interface HandTunnelOptions {
  readonly tb: Testbed;
  readonly nodes: readonly [TestNode, TestNode];
  readonly runner: Runner;
  readonly implementation: "kernel" | "userspace";
  /** Where the private keys are written (0600). */
  readonly dir: string;
  readonly endpointFamily: "ipv4" | "ipv6";
  readonly iface: (node: TestNode) => string;
  readonly port: number;
  readonly table: number;
  readonly rulePriority: number;
  readonly mtu: number;
}

export class HandTunnel {
  private mtu: number;

  private constructor(private readonly o: HandTunnelOptions) {
    this.mtu = o.mtu;
  }

  static async create(o: HandTunnelOptions): Promise<HandTunnel> {
    const t = new HandTunnel(o);
    const keys = o.nodes.map(() => generateKeyPair());
    for (const [i, node] of o.nodes.entries()) {
      const peer = o.nodes[1 - i] as TestNode;
      const peerKey = keys[1 - i]?.publicKey ?? "";
      const keyFile = join(o.dir, `hand-${node.name}.key`);
      await writeFile(keyFile, `${keys[i]?.privateKey ?? ""}\n`, { mode: 0o600 });
      const iface = o.iface(node);
      if (o.implementation === "kernel") await t.ip(node, "link", "add", iface, "type", "wireguard");
      // wireguard-go detaches; at any log level but silent it would hold our stdout open.
      else await o.runner({ file: "ip", args: ["netns", "exec", node.ns, "wireguard-go", iface], env: { LOG_LEVEL: "silent" }, timeoutMs: 30_000 });
      const endpoint = o.endpointFamily === "ipv6" ? `[${peer.underlay6}]:${o.port}` : `${peer.underlay4}:${o.port}`;
      const set = wg.set(iface, {
        privateKeyFile: keyFile,
        listenPort: o.port,
        peers: [{ publicKey: peerKey, endpoint, allowedIPs: [peer.podCIDR4, peer.podCIDR6], persistentKeepalive: undefined }],
      });
      await o.tb.exec(node.ns, [set.file, ...set.args]);
      await t.ip(node, "link", "set", iface, "mtu", String(o.mtu), "up");
      await t.ip(node, "-4", "route", "add", peer.podCIDR4, "dev", iface, "table", String(o.table));
      await t.ip(node, "-6", "route", "add", peer.podCIDR6, "dev", iface, "table", String(o.table));
    }
    return t;
  }

  get currentMtu(): number {
    return this.mtu;
  }

  async setMtu(mtu: number): Promise<void> {
    for (const node of this.o.nodes) await this.ip(node, "link", "set", this.o.iface(node), "mtu", String(mtu));
    this.mtu = mtu;
  }

  /** Steers pod traffic between the two nodes onto `path`, with the pods' MTU set to `mtu`. */
  async select(path: Path, mtu: number): Promise<void> {
    for (const [i, node] of this.o.nodes.entries()) {
      const peer = this.o.nodes[1 - i] as TestNode;
      for (const [family, cidr] of [["-4", peer.podCIDR4], ["-6", peer.podCIDR6]] as const) {
        await this.o.tb.exec(node.ns, ["ip", family, "rule", "del", "priority", String(this.o.rulePriority)], { okExitCodes: [2] });
        if (path === "netd") continue;
        const table = path === "plain" ? "main" : String(this.o.table);
        await this.ip(node, family, "rule", "add", "priority", String(this.o.rulePriority), "to", cidr, "lookup", table);
      }
      await this.o.tb.exec(node.ns, ["ip", "link", "set", "pod0", "mtu", String(mtu)]);
      await this.o.tb.exec(node.podNs, ["ip", "link", "set", "eth0", "mtu", String(mtu)]);
    }
  }

  private async ip(node: TestNode, ...args: string[]): Promise<void> {
    await this.o.tb.exec(node.ns, ["ip", ...args]);
  }
}
