import type { Command, CommandResult } from "../../lib/exec.js";
import { parsePrefix, type Family } from "../cidr.js";

/** `ip` (iproute2): builders and parsers for the links, routes and rules netd owns. */

export interface LiveLink {
  readonly name: string;
  readonly mtu: number;
  readonly up: boolean;
  /** "wireguard" for the kernel module, "tun" for wireguard-go, undefined when ip does not say. */
  readonly kind: string | undefined;
}

export function linkShow(iface: string): Command {
  // Status 1 with "does not exist" is an answer: there is no such link yet.
  return { file: "ip", args: ["-j", "-d", "link", "show", "dev", iface], okExitCodes: [1], timeoutMs: 30_000 };
}

export function parseLinkShow(result: CommandResult): LiveLink | undefined {
  if (result.exitCode !== 0) {
    if (/does not exist/i.test(result.stderr)) return undefined;
    throw new Error(`ip link show failed: ${result.stderr.trim()}`);
  }
  const [link] = JSON.parse(result.stdout) as Array<{
    ifname: string;
    mtu: number;
    flags?: string[];
    linkinfo?: { info_kind?: string };
  }>;
  if (!link) return undefined;
  return { name: link.ifname, mtu: link.mtu, up: (link.flags ?? []).includes("UP"), kind: link.linkinfo?.info_kind };
}

export function linkAddWireGuard(iface: string): Command {
  return { file: "ip", args: ["link", "add", "dev", iface, "type", "wireguard"], timeoutMs: 30_000 };
}

export function linkSet(iface: string, settings: { mtu?: number; up?: boolean }): Command {
  const args = ["link", "set", "dev", iface];
  if (settings.mtu !== undefined) args.push("mtu", String(settings.mtu));
  if (settings.up) args.push("up");
  return { file: "ip", args, timeoutMs: 30_000 };
}

export function linkDelete(iface: string): Command {
  return { file: "ip", args: ["link", "delete", "dev", iface], okExitCodes: [1], timeoutMs: 30_000 };
}

export interface InterfaceAddress {
  readonly iface: string;
  readonly mtu: number;
  readonly address: string;
}

/** Every address on every link with its link's MTU: how netd finds its underlay interface. */
export function addrShow(): Command {
  return { file: "ip", args: ["-j", "addr", "show"], timeoutMs: 30_000 };
}

export function parseAddrShow(stdout: string): InterfaceAddress[] {
  const links = JSON.parse(stdout) as Array<{ ifname: string; mtu: number; addr_info?: Array<{ local?: string }> }>;
  return links.flatMap((link) =>
    (link.addr_info ?? []).flatMap((a) => (a.local ? [{ iface: link.ifname, mtu: link.mtu, address: a.local }] : [])),
  );
}

export interface LiveRoute {
  /** Canonical prefix. */
  readonly dst: string;
  readonly dev: string | undefined;
}

export function routeShow(family: Family, table: number): Command {
  // Status 2 "FIB table does not exist" is an answer: nothing was ever added to the table.
  return { file: "ip", args: ["-j", `-${family}`, "route", "show", "table", String(table)], okExitCodes: [2], timeoutMs: 30_000 };
}

export function parseRouteShow(result: CommandResult): LiveRoute[] {
  if (result.exitCode !== 0) {
    if (/table does not exist/i.test(result.stderr)) return [];
    throw new Error(`ip route show failed: ${result.stderr.trim()}`);
  }
  const routes = JSON.parse(result.stdout || "[]") as Array<{ dst: string; dev?: string }>;
  // "default" and other non-prefix destinations are not netd's; ignore them rather than fail.
  return routes.flatMap((r) => {
    try {
      return [{ dst: parsePrefix(r.dst).text, dev: r.dev }];
    } catch {
      return [];
    }
  });
}

/** Route changes for one `ip -batch -` run: one process for a whole change set. */
export type RouteChange =
  | { readonly op: "replace"; readonly dst: string; readonly dev: string; readonly table: number; readonly mtu?: number }
  | { readonly op: "delete"; readonly dst: string; readonly table: number };

export function routeBatch(changes: readonly RouteChange[]): Command {
  const lines = changes.map((c) =>
    c.op === "replace"
      ? `route replace ${c.dst} dev ${c.dev} table ${c.table}${c.mtu === undefined ? "" : ` mtu ${c.mtu}`}`
      : `route delete ${c.dst} table ${c.table}`,
  );
  return { file: "ip", args: ["-batch", "-"], input: `${lines.join("\n")}\n`, timeoutMs: 60_000 };
}

export interface Rule {
  readonly family: Family;
  readonly priority: number;
  readonly table: number;
  readonly fwmark: number;
  readonly fwmask: number;
  /** "not fwmark": matches every packet without the mark. */
  readonly invert: boolean;
}

export function ruleShow(family: Family): Command {
  return { file: "ip", args: ["-j", `-${family}`, "rule", "show"], timeoutMs: 30_000 };
}

export function parseRuleShow(family: Family, stdout: string): Rule[] {
  const rules = JSON.parse(stdout || "[]") as Array<{
    priority: number;
    table?: string;
    fwmark?: string;
    fwmask?: string;
    not?: null;
  }>;
  return rules.flatMap((r) => {
    const table = Number(r.table);
    if (!Number.isInteger(table) || r.fwmark === undefined) return [];
    return [
      {
        family,
        priority: r.priority,
        table,
        fwmark: Number(r.fwmark),
        fwmask: r.fwmask === undefined ? 0xffffffff : Number(r.fwmask),
        invert: "not" in r,
      },
    ];
  });
}

function ruleArgs(rule: Rule): string[] {
  return [
    `-${rule.family}`,
    "rule",
    ...(rule.invert ? ["not"] : []),
    "fwmark",
    `0x${rule.fwmark.toString(16)}/0x${rule.fwmask.toString(16)}`,
    "table",
    String(rule.table),
    "priority",
    String(rule.priority),
  ];
}

export function ruleAdd(rule: Rule): Command {
  const [family = "", , ...rest] = ruleArgs(rule);
  return { file: "ip", args: [family, "rule", "add", ...rest], timeoutMs: 30_000 };
}

export function ruleDelete(rule: Rule): Command {
  const [family = "", , ...rest] = ruleArgs(rule);
  // Status 2 "No such file or directory": already gone, which is what delete wants.
  return { file: "ip", args: [family, "rule", "delete", ...rest], okExitCodes: [2], timeoutMs: 30_000 };
}

export function sameRule(a: Rule, b: Rule): boolean {
  return (
    a.family === b.family &&
    a.priority === b.priority &&
    a.table === b.table &&
    a.fwmark === b.fwmark &&
    a.fwmask === b.fwmask &&
    a.invert === b.invert
  );
}
