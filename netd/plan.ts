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
    if (n.publicKey) byKey.set(n.publicKey, [...(byKey.get(n.publicKey) ?? []), n.name]);
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
  const own = new Set(self ? selfPrefixes(self, options) : []);
  const claims = new Map<string, NodeInfo[]>();
  const prefixesOf = new Map(candidates.map((n) => [n, peerPrefixes(n, options)]));
  for (const [n, prefixes] of prefixesOf) {
    for (const prefix of prefixes) {
      const list = claims.get(prefix);
      if (list) list.push(n);
      else claims.set(prefix, [n]);
    }
  }
  const owner = new Map<string, string>();
  for (const [prefix, claimants] of claims) {
    if (own.has(prefix)) {
      for (const c of claimants) conflicts.push({ node: c.name, reason: `${prefix} belongs to this node; not routed to ${c.name}` });
      continue;
    }
    const winner = [...claimants].sort((a, b) => b.created - a.created || byName(a.name, b.name))[0];
    if (!winner) continue;
    owner.set(prefix, winner.name);
    if (claimants.length > 1) {
      const losers = claimants.filter((c) => c !== winner).map((c) => c.name);
      conflicts.push({ node: winner.name, reason: `${prefix} also claimed by ${losers.join(", ")}; the newest node gets it` });
    }
  }

  const peers = candidates.map((n): DesiredPeer => {
    const endpointIP = n.internalIPs.find((ip) => isIP(ip) === options.endpointFamily) ?? n.internalIPs[0];
    return {
      node: n.name,
      publicKey: n.publicKey ?? "",
      endpoint: endpointIP === undefined ? undefined : formatEndpoint(endpointIP, n.port ?? options.defaultPort),
      allowedIPs: (prefixesOf.get(n) ?? []).filter((p) => owner.get(p) === n.name),
      persistentKeepalive: options.persistentKeepalive,
    };
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

function peerPrefixes(n: NodeInfo, options: PlanOptions): string[] {
  const nodeIPs = options.nodeEncryption ? n.internalIPs.map((ip) => hostPrefix(ip).text) : [];
  return uniqueSorted([...n.podCIDRs, ...nodeIPs]);
}

function selfPrefixes(n: NodeInfo, options: PlanOptions): string[] {
  return peerPrefixes(n, { ...options, nodeEncryption: true });
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
