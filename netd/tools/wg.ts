import type { Command } from "../../lib/exec.js";

/** `wg` (wireguard-tools): builders and parsers. Works the same on kernel and wireguard-go devices. */

export interface LivePeer {
  readonly publicKey: string;
  /** "192.0.2.12:51872" or "[fd00::1]:51872"; undefined before the peer has one. */
  readonly endpoint: string | undefined;
  /** As wg prints them (canonical prefixes). */
  readonly allowedIPs: readonly string[];
  /** Unix seconds; 0 when there was never a handshake. */
  readonly latestHandshake: number;
  readonly rxBytes: number;
  readonly txBytes: number;
  readonly persistentKeepalive: number | undefined;
}

export interface LiveDevice {
  /** The device's public key; its private key is read by wg but dropped by the parser. */
  readonly publicKey: string | undefined;
  readonly listenPort: number;
  /** 0 when off. */
  readonly fwmark: number;
  readonly peers: readonly LivePeer[];
}

export function showDump(iface: string): Command {
  return { file: "wg", args: ["show", iface, "dump"], timeoutMs: 30_000 };
}

/**
 * Parses `wg show <if> dump`: a device line (private key, public key, port, fwmark) then one
 * tab-separated line per peer. The private key column is never kept.
 */
export function parseDump(stdout: string): LiveDevice {
  const lines = stdout.split("\n").filter((l) => l.trim() !== "");
  const head = lines[0]?.split("\t");
  if (!head || head.length < 4) throw new Error(`unexpected wg dump header: ${JSON.stringify(head?.slice(1))}`);
  const peers = lines.slice(1).map((line) => {
    const f = line.split("\t");
    if (f.length < 8) throw new Error(`unexpected wg dump peer line with ${f.length} fields`);
    const [publicKey = "", , endpoint = "", allowed = "", handshake = "0", rx = "0", tx = "0", keepalive = "off"] = f;
    return {
      publicKey,
      endpoint: endpoint === "(none)" ? undefined : endpoint,
      allowedIPs: allowed === "(none)" || allowed === "" ? [] : allowed.split(","),
      latestHandshake: Number(handshake),
      rxBytes: Number(rx),
      txBytes: Number(tx),
      persistentKeepalive: keepalive === "off" ? undefined : Number(keepalive),
    };
  });
  const [, publicKey = "", port = "0", fwmark = "off"] = head;
  return {
    publicKey: publicKey === "(none)" ? undefined : publicKey,
    listenPort: Number(port),
    fwmark: fwmark === "off" ? 0 : Number(fwmark),
    peers,
  };
}

export type PeerChange =
  | { readonly publicKey: string; readonly remove: true }
  | {
      readonly publicKey: string;
      readonly remove?: false;
      readonly endpoint: string | undefined;
      readonly allowedIPs: readonly string[];
      readonly persistentKeepalive: number | undefined;
    };

export interface DeviceChange {
  /**
   * The key file's path: wg reads the key from it, so the key never enters argv. (Not
   * /dev/stdin: the runner's stdin is a socket, which wg cannot fopen.)
   */
  readonly privateKeyFile?: string;
  readonly listenPort?: number;
  readonly fwmark?: number;
  /** Applied in order: the planner puts peers that gain an allowed-ip before those that lose it. */
  readonly peers: readonly PeerChange[];
}

/** One `wg set` for a whole change set, however many peers it touches. */
export function set(iface: string, change: DeviceChange): Command {
  const args = ["set", iface];
  if (change.privateKeyFile !== undefined) args.push("private-key", change.privateKeyFile);
  if (change.listenPort !== undefined) args.push("listen-port", String(change.listenPort));
  if (change.fwmark !== undefined) args.push("fwmark", change.fwmark === 0 ? "off" : `0x${change.fwmark.toString(16)}`);
  for (const peer of change.peers) {
    args.push("peer", peer.publicKey);
    if (peer.remove) {
      args.push("remove");
      continue;
    }
    if (peer.endpoint !== undefined) args.push("endpoint", peer.endpoint);
    // `allowed-ips` replaces the peer's whole list; "" empties it.
    args.push("allowed-ips", peer.allowedIPs.join(","));
    args.push("persistent-keepalive", peer.persistentKeepalive === undefined ? "off" : String(peer.persistentKeepalive));
  }
  return { file: "wg", args, timeoutMs: 60_000 };
}

/** A change that sets nothing. */
export function isEmptyChange(change: DeviceChange): boolean {
  return (
    change.privateKeyFile === undefined &&
    change.listenPort === undefined &&
    change.fwmark === undefined &&
    change.peers.length === 0
  );
}
