import { CoreV1Api, PatchStrategy, setHeaderOptions, type KubeConfig } from "@kubernetes/client-node";
import type { Runner } from "../lib/exec.js";
import type { Logger } from "../lib/log.js";
import { parsePrefix, type Family } from "./cidr.js";
import type { NetdConfig } from "./config.js";
import { Dataplane, type Implementation } from "./dataplane.js";
import { generateKeyPair, loadOrCreateKey, writeKeyFile, type KeyPair } from "./keys.js";
import type { NetdMetrics } from "./metrics.js";
import { NodeWatch } from "./node-watch.js";
import { nodeInfo, PORT_ANNOTATION, PUBLIC_KEY_ANNOTATION, type NodeInfo } from "./nodes.js";
import { plan, type Finding, type Plan } from "./plan.js";
import type { LiveDevice } from "./tools/wg.js";

export interface AgentOptions {
  readonly config: NetdConfig;
  readonly kubeConfig: KubeConfig;
  /** Already wrapped by {@link NetdMetrics.countingRunner} when commands should be counted. */
  readonly runner: Runner;
  readonly logger: Logger;
  readonly metrics: NetdMetrics;
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
 * The daemon: key, node watch, reconcile loop. Reconciles run one at a time; events that
 * arrive during one mark it dirty and it runs once more, so a burst of changes costs one
 * extra pass, not one per event. A Node event is applied as a delta from the last reconcile
 * (nothing read back); a start, a relist, the periodic resync, a key rotation and a retry
 * compare with the live state. A stop leaves the interface, peers and routes in place.
 */
export class Agent {
  private keys: KeyPair | undefined;
  private nodes = new Map<string, NodeInfo>();
  private current: Plan | undefined;
  private device: LiveDevice | undefined;
  private running: Promise<void> | undefined;
  private dirty = false;
  /** The next reconcile compares with the live state (set by anything but a watch event). */
  private fullPending = true;
  /** The interface's MTU and state were last checked for this view of this node. */
  private interfaceChecked: { self: NodeInfo | undefined; mtu: number } | undefined;
  /** Settles when start() has created (or found) the interface. */
  private interfaceReady: Promise<void> | undefined;
  private stopped = false;
  private lastReconcile: Date | undefined;
  private lastError: string | undefined;
  private reportedFindings = "";
  private readonly timers: NodeJS.Timeout[] = [];
  private retry: NodeJS.Timeout | undefined;
  private readonly dataplane: Dataplane;
  private readonly watch: NodeWatch<NodeInfo>;
  private readonly api: CoreV1Api;
  private readonly log: Logger;

  constructor(private readonly o: AgentOptions) {
    const c = o.config;
    this.log = o.logger.child({ node: c.nodeName, iface: c.iface });
    this.dataplane = new Dataplane({
      runner: o.runner,
      logger: this.log,
      iface: c.iface,
      listenPort: c.listenPort,
      fwmark: c.fwmark,
      fwmask: c.fwmask,
      table: c.table,
      rulePriority: c.rulePriority,
      implementation: c.implementation,
      wireguardGo: c.wireguardGo,
      nftTable: c.nftTable,
    });
    this.api = o.kubeConfig.makeApiClient(CoreV1Api);
    this.watch = new NodeWatch({
      kubeConfig: o.kubeConfig,
      logger: this.log,
      // The watch reads each Node once, when it changes: one event re-reads one Node, not all.
      project: nodeInfo,
      onChange: (nodes, reason) => this.onNodes(nodes, reason),
      onError: () => o.metrics.apiErrors.inc(),
    });
  }

  async start(): Promise<void> {
    const c = this.o.config;
    const { keys, created } = await loadOrCreateKey(c.keyFile);
    this.keys = keys;
    this.log.info({ keyFile: c.keyFile, publicKey: keys.publicKey, created }, created ? "created private key" : "loaded private key");
    // The interface exists from the start (with a provisional MTU until the node's underlay
    // is known), so that a restart finds and keeps the one the previous run left.
    // The first list (a second or more at thousands of nodes) does not wait for the interface;
    // a reconcile does (reconcile() awaits interfaceReady), so they never both create it.
    const ready = (async () => this.dataplane.ensureInterface(c.mtu ?? (await this.provisionalMtu()), { keepMtu: c.mtu === undefined }))();
    this.interfaceReady = ready.then(() => undefined, () => undefined);
    this.watch.start();
    let implementation: Implementation;
    try {
      ({ implementation } = await ready);
    } catch (err) {
      await this.watch.stop();
      throw err;
    }
    this.log.info({ implementation, port: c.listenPort }, `WireGuard implementation: ${implementation === "kernel" ? "kernel module" : "wireguard-go (userspace)"}`);
    this.timers.push(setInterval(() => this.schedule("resync"), c.resyncIntervalMs));
    this.timers.push(setInterval(() => void this.refreshStats(), 10_000));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    clearTimeout(this.retry);
    await this.watch.stop();
    await this.running;
    this.log.info("stopped; interface, peers and routes stay in place");
  }

  get healthy(): boolean {
    return this.lastReconcile !== undefined && this.lastError === undefined;
  }

  /** Replaces the key, applies it locally, then publishes it; peers follow the annotation. */
  async rotateKey(): Promise<void> {
    const keys = generateKeyPair();
    await writeKeyFile(this.o.config.keyFile, keys.privateKey);
    const old = this.keys?.publicKey;
    this.keys = keys;
    this.log.info({ publicKey: keys.publicKey, previous: old }, "rotated private key");
    this.schedule("key rotated");
    await this.running;
  }

  status(): AgentStatus {
    const byKey = new Map(this.current?.peers.map((p) => [p.publicKey, p.node]) ?? []);
    return {
      node: this.o.config.nodeName,
      iface: this.o.config.iface,
      implementation: this.dataplane.implementation,
      publicKey: this.keys?.publicKey,
      listenPort: this.o.config.listenPort,
      synced: this.watch.synced,
      lastReconcile: this.lastReconcile?.toISOString(),
      lastError: this.lastError,
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
    // A copy: the watch goes on changing its map while a reconcile plans from this one.
    this.nodes = new Map(nodes);
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
    if (!this.watch.synced || !this.keys) return;
    await this.interfaceReady;
    const c = this.o.config;
    const m = this.o.metrics;
    const end = m.reconcileDuration.startTimer();
    m.reconciles.inc();
    try {
      const keys = this.keys;
      const self = this.nodes.get(c.nodeName);
      const mode = this.fullPending ? "full" : "delta";
      this.fullPending = false;
      // A delta trusts the interface as the last reconcile left it while this node's own Node
      // is the same object (the watch replaces it on any change): two processes fewer per event.
      let mtu = this.interfaceChecked?.mtu;
      if (mode === "full" || mtu === undefined || this.interfaceChecked?.self !== self) {
        this.interfaceChecked = undefined;
        mtu = c.mtu ?? (await this.mtuFor(self));
        await this.dataplane.ensureInterface(mtu);
        this.interfaceChecked = { self, mtu };
      }
      const next = plan(this.nodes.values(), {
        nodeName: c.nodeName,
        publicKey: keys.publicKey,
        defaultPort: c.listenPort,
        nodeEncryption: c.nodeEncryption,
        endpointFamily: this.endpointFamily(self),
        persistentKeepalive: c.persistentKeepalive,
        strict: c.strict,
        strictCIDRs: c.strictCIDRs,
      });
      const result = await this.dataplane.apply(next, { ...keys, file: c.keyFile }, c.strict, mode);
      this.current = next;
      if (result.device) {
        this.device = result.device;
        this.observe();
      } else if (result.peersChanged > 0) {
        // A delta read nothing back: re-read the peers (all of them, O(cluster)) only when it
        // changed some, off the change's path. Most Node events (status updates) change none.
        setImmediate(() => void this.refreshStats());
      }
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
      this.retry = setTimeout(() => this.schedule("retry after failure"), 2_000);
    } finally {
      end();
    }
  }

  /** Publishes this node's key and port when the Node does not show them yet. */
  private async publish(self: NodeInfo, keys: KeyPair): Promise<void> {
    const port = this.o.config.listenPort;
    if (self.publicKey === keys.publicKey && self.port === port) return;
    try {
      await this.api.patchNode(
        { name: self.name, body: { metadata: { annotations: { [PUBLIC_KEY_ANNOTATION]: keys.publicKey, [PORT_ANNOTATION]: String(port) } } } },
        setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
      );
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

  private observe(): void {
    if (!this.device) return;
    const byKey = new Map(this.current?.peers.map((p) => [p.publicKey, p.node]) ?? []);
    this.o.metrics.observeDevice(this.device, (k) => byKey.get(k), Math.floor(Date.now() / 1000));
  }

  async refreshStats(): Promise<void> {
    if (this.stopped) return;
    try {
      this.device = await this.dataplane.readDevice();
      this.observe();
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, "reading WireGuard statistics failed");
    }
  }

  private endpointFamily(self: NodeInfo | undefined): Family {
    if (this.o.config.endpointFamily) return this.o.config.endpointFamily;
    const first = self?.internalIPs[0];
    return first === undefined ? 4 : parsePrefix(first).family;
  }

  private async mtuFor(self: NodeInfo | undefined): Promise<number> {
    const underlay = self ? await this.dataplane.underlayMtu(self.internalIPs) : undefined;
    if (!underlay) return this.provisionalMtu();
    return underlay.mtu - this.o.config.mtuOverhead;
  }

  /** Before the node's InternalIP is known: the smallest MTU of the links with a global address. */
  private async provisionalMtu(): Promise<number> {
    const mtu = await this.dataplane.smallestUnderlayMtu();
    return (mtu ?? 1500) - this.o.config.mtuOverhead;
  }
}
