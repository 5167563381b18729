import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import * as ip from "./ip.js";

const testdata = (name: string) => readFileSync(join(import.meta.dirname, "testdata", name), "utf8");
const ok = (stdout: string) => ({ exitCode: 0, stdout, stderr: "" });

describe("ip link", () => {
  it("parses a wireguard-go (tun) link and a missing one", () => {
    expect(ip.parseLinkShow(ok(testdata("ip-link-show-wireguard-go.json")))).toEqual({ name: "cloak-ndcap0", mtu: 1420, up: true, kind: undefined });
    expect(ip.parseLinkShow(ok(testdata("ip-link-show-tun-detail.json")))).toEqual({ name: "cndt0", mtu: 1500, up: false, kind: "tun" });
    expect(ip.parseLinkShow({ exitCode: 1, stdout: "", stderr: 'Device "nope" does not exist.\n' })).toBeUndefined();
    expect(() => ip.parseLinkShow({ exitCode: 1, stdout: "", stderr: "Operation not permitted" })).toThrow(/ip link show failed/);
  });

  it("builds link commands", () => {
    expect(ip.linkAddWireGuard("w0").args).toEqual(["link", "add", "dev", "w0", "type", "wireguard"]);
    expect(ip.linkSet("w0", { mtu: 1420, up: true }).args).toEqual(["link", "set", "dev", "w0", "mtu", "1420", "up"]);
  });

  it("lists addresses with their link's MTU", () => {
    const all = ip.parseAddrShow(testdata("ip-addr-show.json"));
    expect(all).toContainEqual({ iface: "lo", mtu: 65536, address: "127.0.0.1" });
    expect(all).toContainEqual({ iface: "lo", mtu: 65536, address: "::1" });
  });
});

describe("ip route", () => {
  it("parses a table, canonicalising host routes, and an absent table", () => {
    expect(ip.parseRouteShow(ok(testdata("ip-route-show-table-v4.json")))).toEqual([
      { dst: "192.0.2.12/32", dev: "cloak-ndcap0" },
      { dst: "198.51.100.64/26", dev: "cloak-ndcap0" },
    ]);
    expect(ip.parseRouteShow(ok(testdata("ip-route-show-table-v6.json")))).toEqual([{ dst: "fd00:cd:2::/64", dev: "cloak-ndcap0" }]);
    expect(ip.parseRouteShow({ exitCode: 2, stdout: "[", stderr: "Error: ipv4: FIB table does not exist.\nDump terminated\n" })).toEqual([]);
  });

  it("batches every route change into one ip process", () => {
    const cmd = ip.routeBatch([
      { op: "replace", dst: "198.51.100.0/26", dev: "w0", table: 51872 },
      { op: "delete", dst: "fd00:cd:2::/64", table: 51872 },
    ]);
    expect(cmd.args).toEqual(["-batch", "-"]);
    expect(cmd.input).toBe("route replace 198.51.100.0/26 dev w0 table 51872\nroute delete fd00:cd:2::/64 table 51872\n");
  });
});

describe("ip rule", () => {
  it("parses not-fwmark rules with and without a mask; ignores the rest", () => {
    expect(ip.parseRuleShow(4, testdata("ip-rule-show-v4.json"))).toEqual([
      { family: 4, priority: 5210, table: 51872, fwmark: 0x10cd, fwmask: 0xffffffff, invert: true },
    ]);
    expect(ip.parseRuleShow(4, testdata("ip-rule-show-fwmask.json"))).toEqual([
      { family: 4, priority: 5172, table: 51872, fwmark: 0xc10000, fwmask: 0xff0000, invert: true },
    ]);
    expect(ip.parseRuleShow(6, testdata("ip-rule-show-v6.json"))).toHaveLength(1);
  });

  it("builds add and delete for one family", () => {
    const rule = { family: 6 as const, priority: 5172, table: 51872, fwmark: 0xc10000, fwmask: 0xff0000, invert: true };
    expect(ip.ruleAdd(rule).args).toEqual(["-6", "rule", "add", "not", "fwmark", "0xc10000/0xff0000", "table", "51872", "priority", "5172"]);
    expect(ip.ruleDelete(rule).args.slice(0, 3)).toEqual(["-6", "rule", "delete"]);
    expect(ip.sameRule(rule, { ...rule })).toBe(true);
    expect(ip.sameRule(rule, { ...rule, family: 4 })).toBe(false);
  });
});
