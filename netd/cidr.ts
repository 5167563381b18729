import { isIP } from "node:net";

export type Family = 4 | 6;

/** A prefix in one canonical spelling, so that "192.0.2.1" and "192.0.2.1/32" compare equal. */
export interface Prefix {
  readonly family: Family;
  /** Canonical text: network address (host bits cleared) and length, "198.51.100.64/26". */
  readonly text: string;
}

/** Canonical text of an address: IPv6 compressed and lower-case, IPv4 as is. */
export function canonicalAddress(address: string): string {
  const family = isIP(address);
  if (family === 4) return address;
  if (family === 6) return new URL(`http://[${address}]/`).hostname.slice(1, -1);
  throw new Error(`not an IP address: ${JSON.stringify(address)}`);
}

/** Parses "a.b.c.d/n", "x::/n" or a bare address (a host prefix); throws on anything else. */
export function parsePrefix(text: string): Prefix {
  const slash = text.indexOf("/");
  const address = slash < 0 ? text : text.slice(0, slash);
  const family = isIP(address);
  if (family !== 4 && family !== 6) throw new Error(`not an IP prefix: ${JSON.stringify(text)}`);
  const bits = family === 4 ? 32 : 128;
  const lengthText = slash < 0 ? String(bits) : text.slice(slash + 1);
  if (!/^\d{1,3}$/.test(lengthText) || Number(lengthText) > bits) {
    throw new Error(`bad prefix length in ${JSON.stringify(text)}`);
  }
  const length = Number(lengthText);
  const network = maskAddress(family, address, length);
  return { family, text: `${network}/${length}` };
}

/** True when `text` parses as a prefix. */
export function isPrefix(text: string): boolean {
  try {
    parsePrefix(text);
    return true;
  } catch {
    return false;
  }
}

/** The first usable address family of an endpoint host, for bracketing IPv6 endpoints. */
export function formatEndpoint(address: string, port: number): string {
  return isIP(address) === 6 ? `[${canonicalAddress(address)}]:${port}` : `${address}:${port}`;
}

/** A host prefix for one address: /32 or /128. */
export function hostPrefix(address: string): Prefix {
  return parsePrefix(address);
}

function maskAddress(family: Family, address: string, length: number): string {
  const bytes = toBytes(family, address);
  for (let i = 0; i < bytes.length; i++) {
    const keep = Math.max(0, Math.min(8, length - i * 8));
    bytes[i] = (bytes[i] ?? 0) & ((0xff << (8 - keep)) & 0xff);
  }
  return fromBytes(family, bytes);
}

function toBytes(family: Family, address: string): number[] {
  if (family === 4) return address.split(".").map(Number);
  const [head = "", tail] = canonicalAddress(address).split("::") as [string, string | undefined];
  const groups = (s: string): number[] => (s === "" ? [] : s.split(":").map((g) => parseInt(g, 16)));
  const first = groups(head);
  const last = tail === undefined ? [] : groups(tail);
  const all = [...first, ...new Array<number>(8 - first.length - last.length).fill(0), ...last];
  return all.flatMap((g) => [g >> 8, g & 0xff]);
}

function fromBytes(family: Family, bytes: number[]): string {
  if (family === 4) return bytes.join(".");
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0)).toString(16));
  return canonicalAddress(groups.join(":"));
}

/**
 * The prefixes not contained in another one of the list, sorted: what an nftables interval
 * set can hold (it refuses overlapping elements). A cluster range given with --cluster-cidr
 * covers the nodes' pod CIDRs inside it, so a node joining or leaving changes nothing there.
 * Input is canonical prefix text (parsePrefix's); sort keys are cached, since the planner runs
 * this over every node's CIDRs on every event.
 */
export function outermostPrefixes(prefixes: Iterable<string>): string[] {
  const keyed = [...new Set(prefixes)].map(prefixKey);
  // By family, then start address, then the shorter (wider) prefix first: a prefix's
  // sub-prefixes follow it directly, so one pass keeps the outermost ones.
  keyed.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : a.length - b.length));
  const kept: string[] = [];
  let outer: PrefixKey | undefined;
  for (const p of keyed) {
    if (outer && outer.key.length === p.key.length && p.length >= outer.length && sameBits(outer, p)) continue;
    kept.push(p.text);
    outer = p;
  }
  return kept.sort();
}

interface PrefixKey {
  readonly text: string;
  /** The network address as a bit string ("4" or "6" first, then 32 or 128 bits). */
  readonly key: string;
  readonly length: number;
}

const keyCache = new Map<string, PrefixKey>();

function prefixKey(text: string): PrefixKey {
  const cached = keyCache.get(text);
  if (cached) return cached;
  const p = parsePrefix(text);
  const [address = "", length = "0"] = p.text.split("/");
  const bits = toBytes(p.family, address).map((b) => b.toString(2).padStart(8, "0")).join("");
  const key = { text: p.text, key: `${p.family}${bits}`, length: Number(length) };
  // Bounded: a cluster's prefixes, not an ever-growing history.
  if (keyCache.size > 65_536) keyCache.clear();
  keyCache.set(text, key);
  return key;
}

function sameBits(outer: PrefixKey, inner: PrefixKey): boolean {
  return outer.key.slice(0, 1 + outer.length) === inner.key.slice(0, 1 + outer.length);
}
