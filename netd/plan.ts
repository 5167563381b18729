import { isIP } from "node:net";
import { formatEndpoint, hostPrefix, outermostPrefixes, parsePrefix, type Family } from "./cidr.js";
import type { NodeInfo } from "./nodes.js";

/**
 * The pure core of netd: (this node, every node) → the interface, routes, rules and strict
 * rules this node should have. No I/O; `diff.ts` compares the result with what is live.
 */

export interface PlanOptions {
  readonly nodeName: string;
  /** This node's public key: another node that shows it is misconfigured and skipped. */
  readonly publicKey: string;
  /** Used for nodes that publish a key but no port annotation. */
  readonly defaultPort: number;
  /** Also encrypt node-to-node traffic: peers' InternalIPs join their allowed-ips. */
  readonly nodeEncryption: boolean;
  /** Which InternalIP becomes a peer's endpoint when it has both families. */
  readonly endpointFamily: Family;
  readonly persistentKeepalive: number | undefined;
  /** Strict mode: drop plain-text traffic to and from other nodes' pod CIDRs. */
  readonly strict: boolean;
  /** The cluster's pod ranges: strict mode protects them whether or not a Node claims them. */
  readonly clusterCIDRs: readonly string[];
}

export interface DesiredPeer {
  readonly node: string;
  readonly publicKey: string;
  readonly endpoint: string | undefined;
  /** Canonical prefixes, sorted. */
  readonly allowedIPs: readonly string[];
  readonly persistentKeepalive: number | undefined;
}

export interface Finding {
  readonly node: string;
  readonly reason: string;
}

export interface Plan {
  /** Sorted by node name. */
  readonly peers: readonly DesiredPeer[];
  /** Every prefix routed into the tunnel: the union of the peers' allowed-ips, sorted. */
  readonly routes: readonly string[];
  /** undefined when strict mode is off. */
  readonly strict: { readonly strict: readonly string[]; readonly local: readonly string[] } | undefined;
  /** This node as the API shows it; undefined until it has been seen. */
  readonly self: NodeInfo | undefined;
  /** Nodes that get no peer, and why. */
  readonly skipped: readonly Finding[];
  /** Prefixes claimed by more than one node, and who got them. */
  readonly conflicts: readonly Finding[];
}

export function plan(nodes: Iterable<NodeInfo>, options: PlanOptions): Plan {
  const all = [...nodes].sort((a, b) => byName(a.name, b.name));
  const self = all.find((n) => n.name === options.nodeName);
  const others = all.filter((n) => n.name !== options.nodeName);
  const skipped: Finding[] = [];
  const conflicts: Finding[] = [];

  for (const n of others) for (const p of n.problems) skipped.push({ node: n.name, reason: p });

  const byKey = new Map<string, string[]>();
  for (const n of others) {
    if (!n.publicKey) continue;
    const names = byKey.get(n.publicKey);
    if (names) names.push(n.name);
    else byKey.set(n.publicKey, [n.name]);
  }

  const candidates: NodeInfo[] = [];
  for (const n of others) {
    if (!n.publicKey) {
      skipped.push({ node: n.name, reason: "no public key published yet" });
    } else if (n.publicKey === options.publicKey) {
      skipped.push({ node: n.name, reason: "publishes this node's own public key" });
    } else if ((byKey.get(n.publicKey)?.length ?? 0) > 1) {
      const sharers = (byKey.get(n.publicKey) ?? []).filter((x) => x !== n.name);
      skipped.push({ node: n.name, reason: `public key is also published by ${sharers.join(", ")}` });
    } else if (n.internalIPs.length === 0) {
      skipped.push({ node: n.name, reason: "no InternalIP to use as endpoint" });
    } else {
      candidates.push(n);
    }
  }

  // A prefix goes to exactly one peer. When two nodes claim it (a pod CIDR being moved from a
  // deleted node to a new one), the newer Node object wins; this node's own prefixes are never
  // given away, since routing them into the tunnel would cut off local pods.
  const own = new Set(self ? selfPrefixes(self) : []);
  // Claims by prefix: the first claimant, and the rest only where there is more than one, so a
  // cluster without conflicts allocates nothing per prefix here.
  const claimedBy = new Map<string, NodeInfo>();
  const moreClaims = new Map<string, NodeInfo[]>();
  const prefixesOf = new Map(candidates.map((n) => [n, peerPrefixes(n, options)]));
  for (const [n, prefixes] of prefixesOf) {
    for (const prefix of prefixes) {
      const first = claimedBy.get(prefix);
      if (!first) claimedBy.set(prefix, n);
      else moreClaims.set(prefix, [...(moreClaims.get(prefix) ?? [first]), n]);
    }
  }
  /** Prefixes some peer does not get (this node's own, or another claimant's): by prefix, the peer that does. */
  const contested = new Map<string, string | undefined>();
  for (const prefix of own) {
    const first = claimedBy.get(prefix);
    if (first) contested.set(prefix, undefined);
  }
  for (const [prefix, claimants] of moreClaims) {
    if (own.has(prefix)) continue;
    const winner = [...claimants].sort((a, b) => b.created - a.created || byName(a.name, b.name))[0];
    if (!winner) continue;
    contested.set(prefix, winner.name);
  }
  // Findings in the order the prefixes were first claimed, as before.
  for (const prefix of claimedBy.keys()) {
    if (!contested.has(prefix)) continue;
    const claimants = moreClaims.get(prefix) ?? [claimedBy.get(prefix) as NodeInfo];
    if (own.has(prefix)) {
      for (const c of claimants) conflicts.push({ node: c.name, reason: `${prefix} belongs to this node; not routed to ${c.name}` });
      continue;
    }
    const winner = contested.get(prefix) ?? "";
    const losers = claimants.filter((c) => c.name !== winner).map((c) => c.name);
    conflicts.push({ node: winner, reason: `${prefix} also claimed by ${losers.join(", ")}; the newest node gets it` });
  }

  const peers = candidates.map((n): DesiredPeer => {
    const prefixes = prefixesOf.get(n) ?? [];
    const allowedIPs = contested.size > 0 && prefixes.some((p) => contested.has(p)) ? prefixes.filter((p) => !contested.has(p) || contested.get(p) === n.name) : prefixes;
    return peerOf(n, allowedIPs, options);
  });

  const routes = [...new Set(peers.flatMap((p) => p.allowedIPs))].sort();
  const strict = options.strict
    ? {
        // Only the outermost prefixes: an nftables interval set refuses overlapping elements,
        // and a cluster range makes the per-node CIDRs inside it redundant.
        strict: outermostPrefixes([...others.flatMap((n) => n.podCIDRs), ...options.clusterCIDRs.map((c) => parsePrefix(c).text)]),
        local: uniqueSorted(self?.podCIDRs ?? []),
      }
    : undefined;
  return { peers, routes, strict, self, skipped, conflicts };
}

/**
 * What a plan derives from one version of a Node alone. The source replaces a NodeInfo on any
 * change, so it is worked out once per version, not once per event for every node: at 5 000
 * nodes re-deriving every peer was most of a Node event's planning (bench/netd/delta-profile.ts).
 * The plan stays a function of its input; an unchanged peer is the same object from plan to
 * plan, which lets the delta's diff pass over it at once.
 */
interface NodeMemo {
  prefixes?: readonly string[];
  prefixesWithIPs?: readonly string[];
  peer?: { readonly family: Family; readonly defaultPort: number; readonly peer: DesiredPeer };
}

const memo = new WeakMap<NodeInfo, NodeMemo>();

function memoOf(n: NodeInfo): NodeMemo {
  let m = memo.get(n);
  if (!m) memo.set(n, (m = {}));
  return m;
}

function peerOf(n: NodeInfo, allowedIPs: readonly string[], options: PlanOptions): DesiredPeer {
  const m = memoOf(n);
  const last = m.peer;
  if (last && last.peer.allowedIPs === allowedIPs && last.family === options.endpointFamily && last.defaultPort === options.defaultPort && last.peer.persistentKeepalive === options.persistentKeepalive) {
    return last.peer;
  }
  const endpointIP = n.internalIPs.find((ip) => isIP(ip) === options.endpointFamily) ?? n.internalIPs[0];
  const peer: DesiredPeer = {
    node: n.name,
    publicKey: n.publicKey ?? "",
    endpoint: endpointIP === undefined ? undefined : formatEndpoint(endpointIP, n.port ?? options.defaultPort),
    allowedIPs,
    persistentKeepalive: options.persistentKeepalive,
  };
  m.peer = { family: options.endpointFamily, defaultPort: options.defaultPort, peer };
  return peer;
}

function peerPrefixes(n: NodeInfo, options: Pick<PlanOptions, "nodeEncryption">): readonly string[] {
  const m = memoOf(n);
  if (options.nodeEncryption) return (m.prefixesWithIPs ??= uniqueSorted([...n.podCIDRs, ...n.internalIPs.map((ip) => hostPrefix(ip).text)]));
  return (m.prefixes ??= uniqueSorted(n.podCIDRs));
}

function selfPrefixes(n: NodeInfo): readonly string[] {
  return peerPrefixes(n, { nodeEncryption: true });
}

/**
 * Node names are DNS-1123 (lowercase ASCII), so code-unit order is the natural one; and at
 * thousands of nodes localeCompare was most of a plan's time.
 */
function byName(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function uniqueSorted(list: readonly string[]): string[] {
  return [...new Set(list)].sort();
}
