import { parsePrefix } from "./cidr.js";
import type { DesiredPeer } from "./plan.js";
import { sameRule, type LiveRoute, type Rule, type RouteChange } from "./tools/ip.js";
import type { DeviceChange, LiveDevice, LivePeer, PeerChange } from "./tools/wg.js";

/**
 * Desired vs live, as the fewest changes: pure functions from the planner's output and the
 * parsed live state to the arguments of one `wg set`, one `ip -batch` and the rule commands.
 */

export interface DeviceWant {
  readonly publicKey: string;
  /** Where the private key is kept; `wg` reads it from there. */
  readonly privateKeyFile: string;
  readonly listenPort: number;
  readonly fwmark: number;
  readonly peers: readonly DesiredPeer[];
}

/** What diffDevice compares of a peer: a live one (`wg show`) or what the last apply set. */
export type ComparablePeer = Pick<LivePeer, "publicKey" | "endpoint" | "allowedIPs" | "persistentKeepalive">;

export function diffDevice(live: Omit<LiveDevice, "peers"> & { readonly peers: readonly ComparablePeer[] }, want: DeviceWant): DeviceChange {
  const livePeers = new Map(live.peers.map((p) => [p.publicKey, p]));
  const wanted = new Set(want.peers.map((p) => p.publicKey));
  const gaining: PeerChange[] = [];
  const losing: PeerChange[] = [];
  for (const peer of want.peers) {
    const current = livePeers.get(peer.publicKey);
    // A delta's base is the last plan, whose unchanged peers are the very objects planned now.
    if (current === peer) continue;
    const currentIPs = canonicalSet(current?.allowedIPs ?? [], peer.allowedIPs);
    const same =
      current !== undefined &&
      current.endpoint === peer.endpoint &&
      current.persistentKeepalive === peer.persistentKeepalive &&
      currentIPs.size === peer.allowedIPs.length &&
      peer.allowedIPs.every((p) => currentIPs.has(p));
    if (same) continue;
    const change: PeerChange = {
      publicKey: peer.publicKey,
      endpoint: peer.endpoint,
      allowedIPs: peer.allowedIPs,
      persistentKeepalive: peer.persistentKeepalive,
    };
    // WireGuard gives a prefix to the last peer it is set on. Peers that gain a prefix go
    // first, so a prefix moving between peers is taken over before its old owner's list is
    // replaced: at no moment is it routed to neither.
    const gains = current === undefined || peer.allowedIPs.some((p) => !currentIPs.has(p));
    (gains ? gaining : losing).push(change);
  }
  const removals: PeerChange[] = live.peers
    .filter((p) => !wanted.has(p.publicKey))
    .map((p) => ({ publicKey: p.publicKey, remove: true as const }));
  return {
    ...(live.publicKey !== want.publicKey ? { privateKeyFile: want.privateKeyFile } : {}),
    ...(live.listenPort !== want.listenPort ? { listenPort: want.listenPort } : {}),
    ...(live.fwmark !== want.fwmark ? { fwmark: want.fwmark } : {}),
    peers: [...gaining, ...losing, ...removals],
  };
}

/**
 * The live allowed-ips as canonical prefixes. `wg` prints them canonically, so when the text
 * already matches the planner's (canonical) list the parse is skipped: with thousands of peers
 * parsing every live prefix on every reconcile was most of a reconcile's time.
 */
function canonicalSet(live: readonly string[], wanted: readonly string[]): Set<string> {
  const raw = new Set(live);
  if (raw.size === wanted.length && wanted.every((p) => raw.has(p))) return raw;
  return new Set(live.map((p) => parsePrefix(p).text));
}

/** Routes in netd's table: add what is missing, delete what no peer has any more. */
export function diffRoutes(live: readonly LiveRoute[], want: readonly string[], iface: string, table: number): RouteChange[] {
  const liveByDst = new Map(live.map((r) => [r.dst, r]));
  const wanted = new Set(want);
  const replaces: RouteChange[] = want
    .filter((dst) => liveByDst.get(dst)?.dev !== iface)
    .map((dst) => ({ op: "replace", dst, dev: iface, table }));
  const deletes: RouteChange[] = live
    .filter((r) => !wanted.has(r.dst))
    .map((r) => ({ op: "delete", dst: r.dst, table }));
  return [...replaces, ...deletes];
}

/** The same between two planned route lists (a delta: what the last apply set, all on `iface`). */
export function diffRouteLists(before: readonly string[], want: readonly string[], iface: string, table: number): RouteChange[] {
  const had = new Set(before);
  const wanted = new Set(want);
  const replaces: RouteChange[] = want.filter((dst) => !had.has(dst)).map((dst) => ({ op: "replace", dst, dev: iface, table }));
  const deletes: RouteChange[] = before.filter((dst) => !wanted.has(dst)).map((dst) => ({ op: "delete", dst, table }));
  return [...replaces, ...deletes];
}

/** netd's rules are the ones that point at its table; anything else there is left alone. */
export function diffRules(live: readonly Rule[], want: readonly Rule[], table: number): { add: Rule[]; remove: Rule[] } {
  const ours = live.filter((r) => r.table === table);
  return {
    add: want.filter((w) => !ours.some((r) => sameRule(r, w))),
    remove: ours.filter((r) => !want.some((w) => sameRule(r, w))),
  };
}
