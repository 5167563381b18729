import { join } from "node:path";
import { writeFileAtomic } from "../lib/atomic-file.js";
import { isPrefix, outermostPrefixes, parsePrefix } from "./cidr.js";
import { readStateFile } from "./keys.js";

/**
 * What strict mode drops, kept in the state directory (a hostPath) so that a restarted or
 * rebooted node can put the drop table back before it has read a single Node: the prefixes
 * the last reconcile protected and this node's own pod CIDRs (which stay reachable locally).
 * The kernel keeps the table across a restart of netd; this file carries it across a reboot.
 */
export interface StrictSets {
  /** Prefixes that must never cross the underlay in plain text. */
  readonly strict: readonly string[];
  /** This node's own pod CIDRs. */
  readonly local: readonly string[];
}

export function strictStateFile(stateDir: string): string {
  return join(stateDir, "strict.json");
}

/** undefined when there is no file yet; throws on a file that does not hold prefix lists. */
export async function loadStrictSets(path: string): Promise<StrictSets | undefined> {
  const text = await readStateFile(path);
  if (text === undefined) return undefined;
  const doc = JSON.parse(text) as { strict?: unknown; local?: unknown };
  const list = (v: unknown, what: string): string[] => {
    if (!Array.isArray(v) || !v.every((p): p is string => typeof p === "string" && isPrefix(p))) throw new Error(`${path}: ${what} is not a list of prefixes`);
    return v.map((p) => parsePrefix(p).text);
  };
  return { strict: list(doc.strict, "strict"), local: list(doc.local, "local") };
}

export function saveStrictSets(path: string, sets: StrictSets): Promise<void> {
  return writeFileAtomic(path, `${JSON.stringify({ strict: sets.strict, local: sets.local })}\n`, { mode: 0o600 });
}

/**
 * The drop table at start: the configured cluster ranges plus whatever the last run protected,
 * with this node's own pod CIDRs as the last run (or a direct read of this Node) knew them.
 */
export function startupStrictSets(clusterCIDRs: readonly string[], saved: StrictSets | undefined, local: readonly string[]): StrictSets {
  const strict = outermostPrefixes([...clusterCIDRs.map((c) => parsePrefix(c).text), ...(saved?.strict ?? [])]);
  return { strict, local: [...new Set(local.map((c) => parsePrefix(c).text))].sort() };
}
