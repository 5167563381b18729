import type { Node } from "../lib/kube/types.js";
import { isWireGuardKey } from "./keys.js";
import { canonicalAddress, isPrefix, parsePrefix } from "./cidr.js";
import { isIP } from "node:net";

/** The Node annotations netd publishes (and reads from every other node). */
export const PUBLIC_KEY_ANNOTATION = "netd.cloak.dev/public-key";
export const PORT_ANNOTATION = "netd.cloak.dev/listen-port";

/** What the planner needs to know about one Node object, already validated. */
export interface NodeInfo {
  readonly name: string;
  /** undefined when the node has no (valid) key annotation yet. */
  readonly publicKey: string | undefined;
  readonly port: number | undefined;
  /** InternalIPs, canonical, in the order the Node lists them. */
  readonly internalIPs: readonly string[];
  /** spec.podCIDRs (or spec.podCIDR), canonical prefixes. */
  readonly podCIDRs: readonly string[];
  /** Milliseconds since the epoch; the newer claim wins when two nodes claim one CIDR. */
  readonly created: number;
  /** Annotation values that were present but unusable, for the planner to report. */
  readonly problems: readonly string[];
}

export function nodeInfo(node: Node): NodeInfo {
  const name = node.metadata?.name ?? "";
  const annotations = node.metadata?.annotations ?? {};
  const problems: string[] = [];
  const keyText = annotations[PUBLIC_KEY_ANNOTATION];
  let publicKey: string | undefined;
  if (keyText !== undefined) {
    if (isWireGuardKey(keyText)) publicKey = keyText;
    else problems.push(`annotation ${PUBLIC_KEY_ANNOTATION} is not a WireGuard public key`);
  }
  const portText = annotations[PORT_ANNOTATION];
  let port: number | undefined;
  if (portText !== undefined) {
    const n = Number(portText);
    if (Number.isInteger(n) && n > 0 && n < 65536) port = n;
    else problems.push(`annotation ${PORT_ANNOTATION} is not a port: ${JSON.stringify(portText)}`);
  }
  const internalIPs = (node.status?.addresses ?? [])
    .filter((a) => a.type === "InternalIP" && isIP(a.address) !== 0)
    .map((a) => canonicalAddress(a.address));
  const cidrs = node.spec?.podCIDRs ?? (node.spec?.podCIDR ? [node.spec.podCIDR] : []);
  const podCIDRs = cidrs.filter((c) => {
    if (isPrefix(c)) return true;
    problems.push(`podCIDR ${JSON.stringify(c)} is not a prefix`);
    return false;
  }).map((c) => parsePrefix(c).text);
  const created = node.metadata?.creationTimestamp ? Date.parse(node.metadata.creationTimestamp) || 0 : 0;
  return { name, publicKey, port, internalIPs, podCIDRs, created, problems };
}
