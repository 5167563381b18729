import type { Runner } from "../lib/exec.js";
import type { Logger } from "../lib/log.js";
import type { ApplyResult, Dataplane, Implementation } from "./backend.js";
import { diffDevice, diffRouteLists, diffRoutes, diffRules } from "./diff.js";
import type { KeyPair } from "./keys.js";
import type { Plan } from "./plan.js";
import * as ip from "./tools/ip.js";
import * as nft from "./tools/nft.js";
import * as wg from "./tools/wg.js";

/**
 * The effects half of netd on Linux: reads what is live (`wg show dump`, `ip -j route/rule`,
 * `nft -j list`) and applies only the difference from the plan. Nothing here tears the
 * interface down except {@link LinuxDataplane.cleanup}.
 */

/** About 150 bytes of argv per peer: 1000 peers is well under ARG_MAX's 2 MiB. */
const MAX_PEERS_PER_SET = 1000;

export interface DataplaneOptions {
  readonly runner: Runner;
  readonly logger: Logger;
  readonly iface: string;
  readonly listenPort: number;
  readonly fwmark: number;
  readonly fwmask: number;
  readonly table: number;
  readonly rulePriority: number;
  /** "auto": the kernel module when `ip link add type wireguard` works, else wireguard-go. */
  readonly implementation: "auto" | Implementation;
  readonly wireguardGo: string;
  readonly nftTable: string;
}

/** What a successful apply left live, as netd set it. */
interface Applied {
  readonly plan: Plan;
  readonly publicKey: string;
  readonly strict: boolean;
}

/** The two rules (IPv4, IPv6): everything but WireGuard's own marked packets consults netd's table. */
export function desiredRules(o: Pick<DataplaneOptions, "fwmark" | "fwmask" | "table" | "rulePriority">): ip.Rule[] {
  return ([4, 6] as const).map((family) => ({
    family,
    priority: o.rulePriority,
    table: o.table,
    fwmark: o.fwmark,
    fwmask: o.fwmask,
    invert: true,
  }));
}

export class LinuxDataplane implements Dataplane {
  private implementationInUse: Implementation | undefined;
  /**
   * Set after each successful apply, cleared when one starts: a delta apply compares with it
   * instead of reading thousands of peers and routes back (Calico's delta sync does the same).
   * Whatever changes the live state behind netd's back is repaired by the next full apply.
   */
  private applied: Applied | undefined;

  constructor(private readonly o: DataplaneOptions) {}

  get implementation(): Implementation | undefined {
    return this.implementationInUse;
  }

  /**
   * Creates the interface if it is missing; sets its MTU and brings it up when they differ.
   * `keepMtu`: leave an existing interface's MTU alone (a restart before the underlay is
   * known must not disturb traffic with a provisional value).
   */
  async ensureInterface(mtu: number, options: { keepMtu?: boolean } = {}): Promise<{ created: boolean; implementation: Implementation }> {
    const { runner, iface, logger } = this.o;
    let link = ip.parseLinkShow(await runner(ip.linkShow(iface)));
    let created = false;
    if (!link) {
      const implementation = await this.create();
      created = true;
      link = ip.parseLinkShow(await runner(ip.linkShow(iface)));
      if (!link) throw new Error(`interface ${iface} did not appear after creating it with ${implementation}`);
      logger.info({ iface, implementation }, "created WireGuard interface");
    }
    this.implementationInUse ??= link.kind === "wireguard" ? "kernel" : "userspace";
    const wantMtu = options.keepMtu && !created ? link.mtu : mtu;
    if (link.mtu !== wantMtu || !link.up) {
      await runner(ip.linkSet(iface, { mtu: wantMtu, up: true }));
      if (link.mtu !== wantMtu) logger.info({ iface, mtu: wantMtu, was: link.mtu }, "set interface MTU");
    }
    return { created, implementation: this.implementationInUse };
  }

  private async create(): Promise<Implementation> {
    const { runner, iface, logger, implementation } = this.o;
    if (implementation !== "userspace") {
      try {
        await runner(ip.linkAddWireGuard(iface));
        this.implementationInUse = "kernel";
        return "kernel";
      } catch (err) {
        if (implementation === "kernel") throw err;
        logger.info({ iface, err: (err as Error).message }, "kernel WireGuard unavailable; using wireguard-go");
      }
    }
    // wireguard-go detaches itself and keeps running after this call returns; it serves the
    // same `wg` interface through its socket in /var/run/wireguard. At any log level but
    // "silent" the detached daemon keeps our stdout pipe open and this call never returns.
    await runner({ file: this.o.wireguardGo, args: [iface], env: { LOG_LEVEL: "silent" }, timeoutMs: 30_000 });
    this.implementationInUse = "userspace";
    return "userspace";
  }

  async setPrivateKey(file: string): Promise<void> {
    await this.o.runner(wg.set(this.o.iface, { privateKeyFile: file, peers: [] }));
  }

  async ensureStrict(rules: Omit<nft.StrictRules, "table" | "iface">): Promise<"kept" | "installed"> {
    // A live table, whatever it holds, is what the previous run left: it keeps dropping until
    // the first full reconcile replaces it (atomically) with the current one.
    if (nft.parseListTable(await this.o.runner(nft.listTable(this.o.nftTable)))) return "kept";
    await this.o.runner(nft.replaceTable({ table: this.o.nftTable, iface: this.o.iface, ...rules }));
    return "installed";
  }

  async readDevice(): Promise<wg.LiveDevice> {
    return wg.parseDump((await this.o.runner(wg.showDump(this.o.iface))).stdout);
  }

  /**
   * Brings everything live in line with the plan, touching only what differs. `delta` compares
   * with what the last apply left instead of the live state, when there was one: a Node event
   * then costs one `wg set` and one `ip -batch`, whatever the cluster's size.
   */
  async apply(plan: Plan, keys: KeyPair & { file: string }, strict: boolean, mode: "full" | "delta" = "full"): Promise<ApplyResult> {
    const base = mode === "delta" ? this.applied : undefined;
    // Cleared first: an apply that fails half-way leaves the next one to read the live state.
    this.applied = undefined;
    const result = base ? await this.applyDelta(base, plan, keys, strict) : await this.applyFull(plan, keys, strict);
    this.applied = { plan, publicKey: keys.publicKey, strict: strict && plan.strict !== undefined };
    return result;
  }

  private async applyDelta(base: Applied, plan: Plan, keys: KeyPair & { file: string }, strict: boolean): Promise<ApplyResult> {
    const { runner, iface, table } = this.o;
    const wantStrict = strict && plan.strict !== undefined;
    // Strict mode switched on or off: the whole table, before the peers. Only its sets'
    // content changed (a node came or went): those elements, after the peers and routes, which
    // is as safe (a new peer's traffic is routed into the tunnel from its `wg set` on; a gone
    // peer's prefixes stay dropped until after its routes are gone) and keeps them off the
    // change's path.
    if (wantStrict !== base.strict) await this.applyStrict(plan, strict);
    // What the last apply set stands in for the live state: nothing is read back or copied.
    const previous = { publicKey: base.publicKey, listenPort: this.o.listenPort, fwmark: this.o.fwmark, peers: base.plan.peers };
    const change = diffDevice(previous, { publicKey: keys.publicKey, privateKeyFile: keys.file, listenPort: this.o.listenPort, fwmark: this.o.fwmark, peers: plan.peers });
    await this.setPeers(change);
    const routeChanges = diffRouteLists(base.plan.routes, plan.routes, iface, table);
    if (routeChanges.length > 0) await runner(ip.routeBatch(routeChanges));
    // Worked out only now: nothing of strict mode's bookkeeping stands before the `wg set`.
    const elements = wantStrict && base.strict && base.plan.strict && plan.strict ? nft.updateElements(this.strictRules(base.plan.strict), this.strictRules(plan.strict)) : undefined;
    if (elements) await runner(elements);
    const strictChanged = wantStrict !== base.strict || elements !== undefined;
    return {
      peersChanged: change.peers.length,
      routesChanged: routeChanges.length,
      rulesChanged: 0,
      strictChanged,
      keyChanged: change.privateKeyFile !== undefined,
      device: undefined,
      mode: "delta",
    };
  }

  private strictRules(sets: NonNullable<Plan["strict"]>): nft.StrictRules {
    return { table: this.o.nftTable, iface: this.o.iface, ...sets };
  }

  /** Strict rules, once they are known to differ: replaced when wanted (nothing leaves in plain text meanwhile), else deleted. */
  private async applyStrict(plan: Plan, strict: boolean): Promise<void> {
    if (strict && plan.strict) await this.o.runner(nft.replaceTable({ table: this.o.nftTable, iface: this.o.iface, ...plan.strict }));
    else await this.o.runner(nft.deleteTable(this.o.nftTable));
  }

  /** One `wg set` per change set, split so that argv stays far below ARG_MAX, order kept. */
  private async setPeers(change: wg.DeviceChange): Promise<void> {
    for (let i = 0; i === 0 || i < change.peers.length; i += MAX_PEERS_PER_SET) {
      const part = i === 0 ? { ...change, peers: change.peers.slice(0, MAX_PEERS_PER_SET) } : { peers: change.peers.slice(i, i + MAX_PEERS_PER_SET) };
      if (!wg.isEmptyChange(part)) await this.o.runner(wg.set(this.o.iface, part));
    }
  }

  private async applyFull(plan: Plan, keys: KeyPair & { file: string }, strict: boolean): Promise<ApplyResult> {
    const { runner, iface, table } = this.o;

    // Both reads at once (they are independent); then strict rules first: nothing may leave in
    // plain text while peers are being set up.
    const [tableResult, live] = await Promise.all([runner(nft.listTable(this.o.nftTable)), this.readDevice()]);
    const liveTable = nft.parseListTable(tableResult);
    const strictChanged = strict && plan.strict ? !nft.isCurrent(liveTable, { table: this.o.nftTable, iface, ...plan.strict }) : liveTable !== undefined;
    if (strictChanged) await this.applyStrict(plan, strict);

    const change = diffDevice(live, {
      publicKey: keys.publicKey,
      privateKeyFile: keys.file,
      listenPort: this.o.listenPort,
      fwmark: this.o.fwmark,
      peers: plan.peers,
    });
    await this.setPeers(change);

    const liveRoutes = [
      ...ip.parseRouteShow(await runner(ip.routeShow(4, table))),
      ...ip.parseRouteShow(await runner(ip.routeShow(6, table))),
    ];
    const routeChanges = diffRoutes(liveRoutes, plan.routes, iface, table);
    if (routeChanges.length > 0) await runner(ip.routeBatch(routeChanges));

    const liveRules = [
      ...ip.parseRuleShow(4, (await runner(ip.ruleShow(4))).stdout),
      ...ip.parseRuleShow(6, (await runner(ip.ruleShow(6))).stdout),
    ];
    const rules = diffRules(liveRules, desiredRules(this.o), table);
    for (const r of rules.add) await runner(ip.ruleAdd(r));
    for (const r of rules.remove) await runner(ip.ruleDelete(r));

    return {
      peersChanged: change.peers.length,
      routesChanged: routeChanges.length,
      rulesChanged: rules.add.length + rules.remove.length,
      strictChanged,
      keyChanged: change.privateKeyFile !== undefined,
      device: wg.isEmptyChange(change) ? live : await this.readDevice(),
      mode: "full",
    };
  }

  /** Finds the MTU of the link that holds `address` (the node's InternalIP). */
  async underlayMtu(addresses: readonly string[]): Promise<{ iface: string; mtu: number } | undefined> {
    const all = ip.parseAddrShow((await this.o.runner(ip.addrShow())).stdout);
    for (const address of addresses) {
      const hit = all.find((a) => a.address === address);
      if (hit) return { iface: hit.iface, mtu: hit.mtu };
    }
    return undefined;
  }

  /** The smallest MTU among links with a global address (not loopback, not netd's own link). */
  async smallestUnderlayMtu(): Promise<number | undefined> {
    const all = ip.parseAddrShow((await this.o.runner(ip.addrShow())).stdout).filter(
      (a) => a.iface !== this.o.iface && !/^(127\.|::1$|fe80:)/i.test(a.address),
    );
    return all.length === 0 ? undefined : Math.min(...all.map((a) => a.mtu));
  }

  /** Removes everything netd ever added: for uninstall, never on a normal stop. */
  async cleanup(): Promise<string[]> {
    const { runner, iface, table } = this.o;
    const done: string[] = [];
    const liveRules = [
      ...ip.parseRuleShow(4, (await runner(ip.ruleShow(4))).stdout),
      ...ip.parseRuleShow(6, (await runner(ip.ruleShow(6))).stdout),
    ].filter((r) => r.table === table);
    for (const r of liveRules) {
      await runner(ip.ruleDelete(r));
      done.push(`rule ${r.family === 6 ? "-6 " : ""}priority ${r.priority} table ${r.table}`);
    }
    const routes = [
      ...ip.parseRouteShow(await runner(ip.routeShow(4, table))),
      ...ip.parseRouteShow(await runner(ip.routeShow(6, table))),
    ];
    if (routes.length > 0) {
      await runner(ip.routeBatch(routes.map((r) => ({ op: "delete", dst: r.dst, table }))));
      done.push(`${routes.length} routes in table ${table}`);
    }
    if (nft.parseListTable(await runner(nft.listTable(this.o.nftTable)))) {
      await runner(nft.deleteTable(this.o.nftTable));
      done.push(`nftables table ${nft.TABLE_FAMILY} ${this.o.nftTable}`);
    }
    if (ip.parseLinkShow(await runner(ip.linkShow(iface)))) {
      await runner(ip.linkDelete(iface));
      done.push(`interface ${iface}`);
    }
    return done;
  }
}
