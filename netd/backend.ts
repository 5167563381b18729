import type { KeyPair } from "./keys.js";
import type { NodeInfo } from "./nodes.js";
import type { Plan } from "./plan.js";
import type { StrictRules } from "./tools/nft.js";
import type { LiveDevice } from "./tools/wg.js";

/**
 * The two seams of netd's Agent, as Kilo's mesh has its Backend interfaces: where the Nodes
 * come from (the API server: node-source.ts) and what programs the node (wg, ip and nft:
 * dataplane.ts). The Agent's loop (delta or full, retry, resync, the dirty flag) is tested
 * against fakes of both (agent.test.ts), and against the real ones in the netns scenarios.
 */

/** The cluster's Nodes, as the planner sees them, and this node's own annotations. */
export interface NodeSource {
  /**
   * Starts delivering the whole node set: after every (re-)list with reason "list" (which makes
   * the next reconcile a full one), after each watch event with its type ("added", ...).
   */
  start(onChange: (nodes: ReadonlyMap<string, NodeInfo>, reason: string) => void): void;
  stop(): Promise<void>;
  /** True once a list has succeeded: before that nothing is trustworthy enough to act on. */
  readonly synced: boolean;
  /** One Node read directly (before the first list); undefined when it does not exist. */
  get(name: string): Promise<NodeInfo | undefined>;
  /** Sets (or, with null, removes) annotations on a Node. */
  annotate(name: string, annotations: Readonly<Record<string, string | null>>): Promise<void>;
}

export type Implementation = "kernel" | "userspace";

export interface ApplyResult {
  readonly peersChanged: number;
  readonly routesChanged: number;
  readonly rulesChanged: number;
  readonly strictChanged: boolean;
  readonly keyChanged: boolean;
  /** The device as read from WireGuard; undefined after a delta apply, which reads nothing. */
  readonly device: LiveDevice | undefined;
  /** "delta": compared with what the last apply left; "full": with the live state. */
  readonly mode: "full" | "delta";
}

/** The node's interface, peers, routes, rules and strict table. */
export interface Dataplane {
  /** Which WireGuard the interface is, once it exists. */
  readonly implementation: Implementation | undefined;
  /**
   * Creates the interface if it is missing; sets its MTU and brings it up when they differ.
   * `keepMtu`: leave an existing interface's MTU alone.
   */
  ensureInterface(mtu: number, options?: { keepMtu?: boolean }): Promise<{ created: boolean; implementation: Implementation }>;
  /**
   * Brings everything in line with the plan, touching only what differs. "delta" compares with
   * what the last successful apply left, "full" with the live state. A failed apply forgets
   * what it set, so the next one compares with the live state whatever it is asked.
   */
  apply(plan: Plan, keys: KeyPair & { file: string }, strict: boolean, mode: "full" | "delta"): Promise<ApplyResult>;
  /** Sets the interface's private key (from its file) and nothing else: the first step of a rotation. */
  setPrivateKey(file: string): Promise<void>;
  /** The strict table, installed only when none is live: "kept" when one was. */
  ensureStrict(rules: Omit<StrictRules, "table" | "iface">): Promise<"kept" | "installed">;
  readDevice(): Promise<LiveDevice>;
  /** The MTU of the link holding one of these addresses (the node's InternalIPs). */
  underlayMtu(addresses: readonly string[]): Promise<{ iface: string; mtu: number } | undefined>;
  /** The smallest MTU among links with a global address: before the node's own address is known. */
  smallestUnderlayMtu(): Promise<number | undefined>;
}
