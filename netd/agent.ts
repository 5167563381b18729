import type { Logger } from "../lib/log.js";
import type { Dataplane, Implementation, NodeSource } from "./backend.js";
import { parsePrefix, type Family } from "./cidr.js";
import { MTU_OVERHEAD, type NetdConfig } from "./config.js";
import { generateKeyPair, loadOrCreateKey, writeKeyFile, type KeyPair } from "./keys.js";
import type { NetdMetrics } from "./metrics.js";
import { PORT_ANNOTATION, PUBLIC_KEY_ANNOTATION, type NodeInfo } from "./nodes.js";
import { plan, type Finding, type Plan } from "./plan.js";
import { loadStrictSets, saveStrictSets, startupStrictSets, strictStateFile, type StrictSets } from "./strict-state.js";
import type { LiveDevice } from "./tools/wg.js";

/** How long after a delta that changed peers their counters are re-read. */
const STATS_AFTER_CHANGE_MS = 1_000;

export interface AgentOptions {
  readonly config: NetdConfig;
  /** Where the Nodes come from (KubeNodeSource; a fake in unit tests). */
  readonly nodes: NodeSource;
  /** What programs the node (LinuxDataplane; a fake in unit tests). */
  readonly dataplane: Dataplane;
  readonly logger: Logger;
  readonly metrics: NetdMetrics;
  /** After a failed reconcile, the next one runs this much later; default 2 s. */
  readonly retryMs?: number;
  /** How often the per-peer counters are re-read for /metrics and /status; default 10 s. */
  readonly statsIntervalMs?: number;
}

/** What `/status` serves and `cloak netd status` prints. */
export interface AgentStatus {
  readonly node: string;
  readonly iface: string;
  readonly implementation: Implementation | undefined;
  readonly publicKey: string | undefined;
  readonly listenPort: number;
  readonly synced: boolean;
  readonly lastReconcile: string | undefined;
  readonly lastError: string | undefined;
  /** When the peer counters below were read from WireGuard. */
  readonly statsAt: string | undefined;
  readonly peers: ReadonlyArray<{
    node: string | undefined;
    publicKey: string;
    endpoint: string | undefined;
    allowedIPs: readonly string[];
    latestHandshake: number;
    rxBytes: number;
    txBytes: number;
  }>;
  readonly skipped: readonly Finding[];
  readonly conflicts: readonly Finding[];
}

/**
 * The daemon: key, node source, reconcile loop. Reconciles run one at a time; events that
 * arrive during one mark it dirty and it runs once more, so a burst of changes costs one
 * extra pass, not one per event. A Node event is applied as a delta from the last reconcile
 * (nothing read back); a start, a relist, the periodic resync, a key rotation and a retry
 * compare with the live state. A stop leaves the interface, peers and routes in place.
 */
export class Agent {
  private keys: KeyPair | undefined;
  private nodes: ReadonlyMap<string, NodeInfo> = new Map();
  /** A re-read of the counters is due (debounced: a burst of changes costs one `wg show`). */
  private statsTimer: NodeJS.Timeout | undefined;
  private current: Plan | undefined;
  private device: LiveDevice | undefined;
  private deviceAt: Date | undefined;
  private running: Promise<void> | undefined;
  private dirty = false;
  /** The next reconcile compares with the live state (set by anything but a watch event). */
  private fullPending = true;
  /** A rotated key not yet published: the next reconcile publishes it, then switches to it. */
  private rotationPending = false;
  /** The interface's MTU and state were last checked for this view of this node and overhead. */
  private interfaceChecked: { self: NodeInfo | undefined; overhead: number; mtu: number } | undefined;
  /** Settles when start() has created (or found) the interface. */
  private interfaceReady: Promise<void> | undefined;
  /** The strict sets last written to the state directory, as JSON. */
  private savedStrict: string | undefined;
  private stopped = false;
  private lastReconcile: Date | undefined;
  private lastError: string | undefined;
  private reportedFindings = "";
  private readonly timers: NodeJS.Timeout[] = [];
  private retry: NodeJS.Timeout | undefined;
  private readonly log: Logger;

  constructor(private readonly o: AgentOptions) {
    this.log = o.logger.child({ node: o.config.nodeName, iface: o.config.iface });
  }

  async start(): Promise<void> {
    const c = this.o.config;
    const { keys, created } = await loadOrCreateKey(c.keyFile);
    this.keys = keys;
    this.log.info({ keyFile: c.keyFile, publicKey: keys.publicKey, created }, created ? "created private key" : "loaded private key");
    // Before any Node is listed: from here on nothing leaves for a remote pod in plain text.
    if (c.strict) await this.installStrict();
    // The interface exists from the start (with a provisional MTU until the node's underlay
    // is known), so that a restart finds and keeps the one the previous run left.
    // The first list (a second or more at thousands of nodes) does not wait for the interface;
    // a reconcile does (reconcile() awaits interfaceReady), so they never both create it.
    const ready = (async () => this.o.dataplane.ensureInterface(c.mtu ?? (await this.provisionalMtu()), { keepMtu: c.mtu === undefined }))();
    this.interfaceReady = ready.then(() => undefined, () => undefined);
    this.o.nodes.start((nodes, reason) => this.onNodes(nodes, reason));
    let implementation: Implementation;
    try {
      ({ implementation } = await ready);
    } catch (err) {
      await this.o.nodes.stop();
      throw err;
    }
    this.log.info({ implementation, port: c.listenPort }, `WireGuard implementation: ${implementation === "kernel" ? "kernel module" : "wireguard-go (userspace)"}`);
    this.timers.push(setInterval(() => this.schedule("resync"), c.resyncIntervalMs));
    this.timers.push(setInterval(() => void this.refreshStats(), this.o.statsIntervalMs ?? 10_000));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    clearTimeout(this.retry);
    clearTimeout(this.statsTimer);
    await this.o.nodes.stop();
    await this.running;
    this.log.info("stopped; interface, peers and routes stay in place");
  }

  get healthy(): boolean {
    return this.lastReconcile !== undefined && this.lastError === undefined;
  }

  /**
   * Replaces the key and makes the change as short as it can be for the peers: the next
   * reconcile publishes the new public key first and switches the interface to it right after,
   * so this node starts using it at about the moment the peers' watches hear of it.
   */
  async rotateKey(): Promise<void> {
    const keys = generateKeyPair();
    await writeKeyFile(this.o.config.keyFile, keys.privateKey);
    const old = this.keys?.publicKey;
    this.keys = keys;
    this.rotationPending = true;
    this.log.info({ publicKey: keys.publicKey, previous: old }, "rotated private key");
    this.schedule("key rotated");
    await this.settled();
  }

  /** The last reconcile's view and the last counters read: serving it runs no command. */
  status(): AgentStatus {
    const byKey = this.nodeByKey();
    return {
      node: this.o.config.nodeName,
      iface: this.o.config.iface,
      implementation: this.o.dataplane.implementation,
      publicKey: this.keys?.publicKey,
      listenPort: this.o.config.listenPort,
      synced: this.o.nodes.synced,
      lastReconcile: this.lastReconcile?.toISOString(),
      lastError: this.lastError,
      statsAt: this.deviceAt?.toISOString(),
      peers: (this.device?.peers ?? []).map((p) => ({
        node: byKey.get(p.publicKey),
        publicKey: p.publicKey,
        endpoint: p.endpoint,
        allowedIPs: p.allowedIPs,
        latestHandshake: p.latestHandshake,
        rxBytes: p.rxBytes,
        txBytes: p.txBytes,
      })),
      skipped: this.current?.skipped ?? [],
      conflicts: this.current?.conflicts ?? [],
    };
  }

  private onNodes(nodes: ReadonlyMap<string, NodeInfo>, reason: string): void {
    // The source's own map, not a copy (5 000 entries per event): a reconcile plans from it
    // synchronously, and a change that lands while it applies marks it dirty for one more pass.
    this.nodes = nodes;
    this.schedule(reason, reason === "list" ? "full" : "delta");
  }

  /** Runs a reconcile now, or once more after the one in progress. */
  schedule(reason: string, mode: "full" | "delta" = "full"): void {
    if (this.stopped) return;
    if (mode === "full") this.fullPending = true;
    if (this.running) {
      this.dirty = true;
      return;
    }
    this.running = this.loop(reason).finally(() => {
      this.running = undefined;
    });
  }

  /** Resolves once the reconcile in progress (if any) and the ones it queued are done. */
  async settled(): Promise<void> {
    while (this.running) await this.running;
  }

  private async loop(reason: string): Promise<void> {
    let why = reason;
    do {
      this.dirty = false;
      await this.reconcile(why);
      why = "changes during the last reconcile";
    } while (this.dirty && !this.stopped);
  }

  private async reconcile(reason: string): Promise<void> {
    // Until the first list succeeds there is nothing trustworthy to act on: keep what is live.
    if (!this.o.nodes.synced || !this.keys) return;
    await this.interfaceReady;
    const c = this.o.config;
    const m = this.o.metrics;
    const dp = this.o.dataplane;
    const end = m.reconcileDuration.startTimer();
    m.reconciles.inc();
    try {
      const keys = this.keys;
      const self = this.nodes.get(c.nodeName);
      const mode = this.fullPending ? "full" : "delta";
      this.fullPending = false;
      if (this.rotationPending && self) {
        // Published first, applied right after: peers hear of the new key (their watch) at
        // about the moment this node starts answering with it (BENCHMARKS.md, key rotation).
        await this.publish(self, keys);
        this.rotationPending = false;
        await dp.setPrivateKey(c.keyFile);
        this.log.info({ publicKey: keys.publicKey }, "switched the interface to the new key");
      }
      const endpointFamily = this.endpointFamily(self);
      const next = plan(this.nodes.values(), {
        nodeName: c.nodeName,
        publicKey: keys.publicKey,
        defaultPort: c.listenPort,
        nodeEncryption: c.nodeEncryption,
        endpointFamily,
        persistentKeepalive: c.persistentKeepalive,
        strict: c.strict,
        clusterCIDRs: c.clusterCIDRs,
      });
      // A delta trusts the interface as the last reconcile left it while this node's own Node
      // is the same object (the source replaces it on any change) and the overhead is the
      // same: two processes fewer per event.
      const overhead = c.mtuOverhead ?? mtuOverheadFor(next, endpointFamily);
      let mtu = this.interfaceChecked?.mtu;
      if (mode === "full" || mtu === undefined || this.interfaceChecked?.self !== self || this.interfaceChecked?.overhead !== overhead) {
        this.interfaceChecked = undefined;
        mtu = c.mtu ?? (await this.mtuFor(self, overhead));
        await dp.ensureInterface(mtu);
        this.interfaceChecked = { self, overhead, mtu };
      }
      const result = await dp.apply(next, { ...keys, file: c.keyFile }, c.strict, mode);
      this.current = next;
      if (result.device) {
        this.setDevice(result.device);
      } else if (result.peersChanged > 0 && !this.statsTimer) {
        // A delta read nothing back: re-read the peers (all of them, O(cluster)) only when it
        // changed some, off the change's path and once per burst. Most Node events (status
        // updates) change none.
        this.statsTimer = setTimeout(() => {
          this.statsTimer = undefined;
          void this.refreshStats();
        }, STATS_AFTER_CHANGE_MS);
      }
      if (next.strict) await this.saveStrict(next.strict);
      this.reportFindings(next);
      const changed = result.peersChanged + result.routesChanged + result.rulesChanged > 0 || result.strictChanged || result.keyChanged;
      this.log[changed ? "info" : "debug"](
        {
          reason,
          peers: next.peers.length,
          peersChanged: result.peersChanged,
          routesChanged: result.routesChanged,
          rulesChanged: result.rulesChanged,
          strictChanged: result.strictChanged,
          keyChanged: result.keyChanged,
          mode: result.mode,
          mtu,
        },
        changed ? "applied changes" : "in sync",
      );
      if (self) await this.publish(self, keys);
      this.lastReconcile = new Date();
      this.lastError = undefined;
    } catch (err) {
      m.reconcileErrors.inc();
      this.lastError = (err as Error).message;
      this.fullPending = true;
      this.log.error({ reason, err: this.lastError }, "reconcile failed; retrying");
      // Retry soon, not only at the next resync.
      clearTimeout(this.retry);
      this.retry = setTimeout(() => this.schedule("retry after failure"), this.o.retryMs ?? 2_000);
    } finally {
      end();
    }
  }

  /**
   * The drop table before the first list: the configured cluster ranges and what the last run
   * protected, with this node's own pod CIDRs excepted (from the state directory, or one read
   * of this Node on a first start). A live table (netd restarted) is kept as it is.
   */
  private async installStrict(): Promise<void> {
    const c = this.o.config;
    const file = strictStateFile(c.stateDir);
    let saved: StrictSets | undefined;
    try {
      saved = await loadStrictSets(file);
    } catch (err) {
      this.log.warn({ file, err: (err as Error).message }, "ignoring the saved strict-mode prefixes");
    }
    let local = saved?.local;
    if (local === undefined) {
      try {
        local = (await this.o.nodes.get(c.nodeName))?.podCIDRs ?? [];
      } catch (err) {
        this.o.metrics.apiErrors.inc();
        this.log.warn({ err: (err as Error).message }, "could not read this Node before the first list: strict mode drops its own pod CIDRs' traffic too until then");
        local = [];
      }
    }
    const sets = startupStrictSets(c.clusterCIDRs, saved, local);
    if (sets.strict.length === 0) {
      this.log.warn("strict mode has no prefixes to protect until the first list: set --cluster-cidr to protect the cluster's pod ranges from the start");
      return;
    }
    let outcome: "kept" | "installed";
    try {
      outcome = await this.o.dataplane.ensureStrict(sets);
    } catch (err) {
      // Not fatal: the first reconcile installs the table again, and fails (unready) until it can.
      this.log.error({ err: (err as Error).message }, "could not install the strict table before the first list");
      return;
    }
    this.log.info({ strict: sets.strict.length, local: sets.local }, outcome === "kept" ? "strict table kept from the previous run" : "strict table installed before the first list");
  }

  private async saveStrict(sets: StrictSets): Promise<void> {
    const text = JSON.stringify(sets);
    if (text === this.savedStrict) return;
    const file = strictStateFile(this.o.config.stateDir);
    try {
      await saveStrictSets(file, sets);
      this.savedStrict = text;
    } catch (err) {
      // The live table is right; only the next reboot's head start is at stake.
      this.log.warn({ file, err: (err as Error).message }, "could not save the strict-mode prefixes");
    }
  }

  /** Publishes this node's key and port when the Node does not show them yet. */
  private async publish(self: NodeInfo, keys: KeyPair): Promise<void> {
    const port = this.o.config.listenPort;
    if (self.publicKey === keys.publicKey && self.port === port) return;
    try {
      await this.o.nodes.annotate(self.name, { [PUBLIC_KEY_ANNOTATION]: keys.publicKey, [PORT_ANNOTATION]: String(port) });
      this.log.info({ publicKey: keys.publicKey, port }, "published public key on the Node");
    } catch (err) {
      this.o.metrics.apiErrors.inc();
      throw new Error(`publishing the public key on Node ${self.name} failed: ${(err as Error).message}`, { cause: err });
    }
  }

  private reportFindings(p: Plan): void {
    const text = JSON.stringify([p.skipped, p.conflicts]);
    this.o.metrics.skippedNodes.set(new Set(p.skipped.map((s) => s.node)).size);
    if (text === this.reportedFindings) return;
    this.reportedFindings = text;
    for (const s of p.skipped) this.log.warn({ peerNode: s.node, reason: s.reason }, "node skipped");
    for (const s of p.conflicts) this.log.warn({ peerNode: s.node, reason: s.reason }, "prefix conflict");
  }

  private nodeByKey(): Map<string, string> {
    return new Map(this.current?.peers.map((p) => [p.publicKey, p.node]) ?? []);
  }

  private setDevice(device: LiveDevice): void {
    this.device = device;
    this.deviceAt = new Date();
    const byKey = this.nodeByKey();
    this.o.metrics.observeDevice(device, (k) => byKey.get(k), Math.floor(this.deviceAt.getTime() / 1000));
  }

  /** Re-reads the per-peer counters (one `wg show dump`): on a timer, never per request. */
  async refreshStats(): Promise<void> {
    if (this.stopped) return;
    try {
      this.setDevice(await this.o.dataplane.readDevice());
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, "reading WireGuard statistics failed");
    }
  }

  private endpointFamily(self: NodeInfo | undefined): Family {
    if (this.o.config.endpointFamily) return this.o.config.endpointFamily;
    const first = self?.internalIPs[0];
    return first === undefined ? 4 : parsePrefix(first).family;
  }

  private async mtuFor(self: NodeInfo | undefined, overhead: number): Promise<number> {
    const underlay = self ? await this.o.dataplane.underlayMtu(self.internalIPs) : undefined;
    if (!underlay) return this.provisionalMtu();
    return underlay.mtu - overhead;
  }

  /**
   * Before the node's InternalIP is known: the smallest MTU of the links with a global address,
   * less the larger (IPv6) overhead unless the endpoint family is configured.
   */
  private async provisionalMtu(): Promise<number> {
    const c = this.o.config;
    const mtu = await this.o.dataplane.smallestUnderlayMtu();
    return (mtu ?? 1500) - (c.mtuOverhead ?? MTU_OVERHEAD[c.endpointFamily ?? 6]);
  }
}

/**
 * The overhead for this peer set: 60 bytes when every peer's endpoint is IPv4, 80 as soon as
 * one is IPv6 (the interface has one MTU for all peers); with no peers, the family peers would
 * use. Sizing for IPv6 whatever the endpoints cost IPv4 meshes 20 bytes of every full packet.
 */
export function mtuOverheadFor(p: Pick<Plan, "peers">, endpointFamily: Family): number {
  if (p.peers.length === 0) return MTU_OVERHEAD[endpointFamily];
  return p.peers.some((peer) => peer.endpoint?.startsWith("[") === true) ? MTU_OVERHEAD[6] : MTU_OVERHEAD[4];
}
