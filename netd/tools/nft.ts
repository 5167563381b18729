import type { Command, CommandResult } from "../../lib/exec.js";
import { parsePrefix } from "../cidr.js";

/**
 * nftables for strict mode: one table that netd owns whole. It is replaced in one atomic
 * transaction (create-if-missing, delete, re-create), so there is never a moment without the
 * rules; and it is only replaced when what is live differs from what is wanted.
 */

export const TABLE_FAMILY = "inet";

export interface StrictRules {
  readonly table: string;
  readonly iface: string;
  /** Pod CIDRs that must never cross the underlay in plain text, canonical prefixes. */
  readonly strict: readonly string[];
  /** This node's own pod CIDRs: traffic to and from them is local, never dropped here. */
  readonly local: readonly string[];
}

/** What is live: undefined when the table does not exist. */
export interface LiveStrictRules {
  readonly layout: string | undefined;
  readonly sets: Readonly<Record<string, readonly string[]>>;
}

/** Bumped whenever the chains below change, so that a newer netd replaces an older table. */
const LAYOUT_VERSION = 1;

export function layoutMarker(rules: Pick<StrictRules, "iface">): string {
  return `cloak-netd layout=${LAYOUT_VERSION} if=${rules.iface}`;
}

/** The four sets, as nft names them, with the prefixes each should hold. */
export function desiredSets(rules: StrictRules): Record<string, string[]> {
  const split = (list: readonly string[], family: 4 | 6) =>
    list.filter((p) => parsePrefix(p).family === family).map((p) => parsePrefix(p).text).sort();
  return {
    strict4: split(rules.strict, 4),
    strict6: split(rules.strict, 6),
    local4: split(rules.local, 4),
    local6: split(rules.local, 6),
  };
}

export function listTable(table: string): Command {
  return { file: "nft", args: ["-j", "list", "table", TABLE_FAMILY, table], okExitCodes: [1], timeoutMs: 30_000 };
}

type NftElem = string | { prefix?: { addr: string; len: number }; range?: [string, string] };
type NftObject = {
  set?: { name: string; elem?: NftElem[] };
  rule?: { comment?: string };
};

export function parseListTable(result: CommandResult): LiveStrictRules | undefined {
  if (result.exitCode !== 0) {
    if (/No such file or directory/i.test(result.stderr)) return undefined;
    throw new Error(`nft list table failed: ${result.stderr.trim()}`);
  }
  const objects = (JSON.parse(result.stdout) as { nftables: NftObject[] }).nftables;
  const sets: Record<string, string[]> = {};
  let layout: string | undefined;
  for (const o of objects) {
    if (o.set) sets[o.set.name] = (o.set.elem ?? []).map(elemText).sort();
    if (o.rule?.comment?.startsWith("cloak-netd layout=")) layout = o.rule.comment;
  }
  return { layout, sets };
}

function elemText(e: NftElem): string {
  if (typeof e === "string") return parsePrefix(e).text;
  if (e.prefix) return parsePrefix(`${e.prefix.addr}/${e.prefix.len}`).text;
  if (e.range) return `${e.range[0]}-${e.range[1]}`;
  return JSON.stringify(e);
}

/** True when the live table already is the wanted one. */
export function isCurrent(live: LiveStrictRules | undefined, rules: StrictRules): boolean {
  if (!live || live.layout !== layoutMarker(rules)) return false;
  const want = desiredSets(rules);
  return Object.entries(want).every(([name, elems]) => sameList(live.sets[name] ?? [], elems));
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** The whole table as one nft script: applied by `nft -f -` as one transaction. */
export function renderTable(rules: StrictRules): string {
  const sets = desiredSets(rules);
  const q = JSON.stringify(rules.iface);
  const set = (name: string, type: string) => {
    const elems = sets[name] ?? [];
    const elements = elems.length > 0 ? ` elements = { ${elems.join(", ")} };` : "";
    return `  set ${name} { type ${type}; flags interval;${elements} }`;
  };
  // A packet to or from a remote pod that does not go through the tunnel would cross the
  // underlay in plain text: drop it. Local pods' own traffic matches the local sets and passes.
  const drops = (dir: "saddr" | "daddr") => [
    `    ip ${dir} @strict4 ip ${dir} != @local4 counter drop`,
    `    ip6 ${dir} @strict6 ip6 ${dir} != @local6 counter drop`,
  ];
  return [
    `table ${TABLE_FAMILY} ${rules.table} {`,
    set("strict4", "ipv4_addr"),
    set("strict6", "ipv6_addr"),
    set("local4", "ipv4_addr"),
    set("local6", "ipv6_addr"),
    `  chain forward {`,
    `    type filter hook forward priority filter; policy accept;`,
    `    iifname ${q} accept comment ${JSON.stringify(layoutMarker(rules))}`,
    `    oifname ${q} accept`,
    ...drops("daddr"),
    ...drops("saddr"),
    `  }`,
    `  chain output {`,
    `    type filter hook output priority filter; policy accept;`,
    `    oifname ${q} accept`,
    ...drops("daddr"),
    `  }`,
    `  chain input {`,
    `    type filter hook input priority filter; policy accept;`,
    `    iifname ${q} accept`,
    ...drops("saddr"),
    `  }`,
    `}`,
  ].join("\n");
}

/** Replaces the table atomically: the first two lines make deleting a missing table a no-op. */
export function replaceTable(rules: StrictRules): Command {
  const script = [
    `table ${TABLE_FAMILY} ${rules.table} {}`,
    `delete table ${TABLE_FAMILY} ${rules.table}`,
    renderTable(rules),
    "",
  ].join("\n");
  return nftScript(script);
}

/**
 * The element changes from one content of the sets to another, as one transaction (deletions
 * first, so a prefix replaced by one covering it never overlaps it); undefined when the sets
 * are the same. What a Node event costs in strict mode, instead of re-writing thousands of
 * elements. Both sides are canonical prefix text (the planner's), so an element's set is known
 * from its text: nothing is parsed or sorted, and a Node event at 5 000 nodes costs two set
 * differences instead of 20 000 prefix parses (bench/netd/delta-profile.ts).
 */
export function updateElements(before: StrictRules, after: StrictRules): Command | undefined {
  const deletes = new Map<string, string[]>();
  const adds = new Map<string, string[]>();
  for (const list of ["strict", "local"] as const) {
    if (before[list] === after[list]) continue;
    collectMissing(before[list], after[list], list, deletes);
    collectMissing(after[list], before[list], list, adds);
  }
  const statements = (op: "delete" | "add", changes: Map<string, string[]>) =>
    SET_NAMES.flatMap((name) => {
      const elems = changes.get(name);
      return elems ? [`${op} element ${TABLE_FAMILY} ${after.table} ${name} { ${elems.join(", ")} }`] : [];
    });
  const lines = [...statements("delete", deletes), ...statements("add", adds)];
  if (lines.length === 0) return undefined;
  return nftScript(`${lines.join("\n")}\n`);
}

const SET_NAMES = ["strict4", "strict6", "local4", "local6"] as const;

/** The elements of `from` that `to` lacks, by the set they belong in (canonical text: IPv6 has a colon). */
function collectMissing(from: readonly string[], to: readonly string[], list: "strict" | "local", into: Map<string, string[]>): void {
  const keep = new Set(to);
  for (const p of from) {
    if (keep.has(p)) continue;
    const name = `${list}${p.includes(":") ? 6 : 4}`;
    const elems = into.get(name);
    if (elems) elems.push(p);
    else into.set(name, [p]);
  }
}

/** `nft -f -`: one script, applied by nft as one transaction. */
function nftScript(script: string): Command {
  return { file: "nft", args: ["-f", "-"], input: script, timeoutMs: 30_000 };
}

export function deleteTable(table: string): Command {
  const script = `table ${TABLE_FAMILY} ${table} {}\ndelete table ${TABLE_FAMILY} ${table}\n`;
  return nftScript(script);
}
