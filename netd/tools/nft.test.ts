import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import * as nft from "./nft.js";

const testdata = (name: string) => readFileSync(join(import.meta.dirname, "testdata", name), "utf8");
const ok = (stdout: string) => ({ exitCode: 0, stdout, stderr: "" });

const rules: nft.StrictRules = {
  table: "cloak-netd",
  iface: "cloak-wg0",
  strict: ["198.51.100.64/26", "fd00:cd:2::/64", "198.51.100.128/26"],
  local: ["198.51.100.0/26"],
};

describe("nft list table", () => {
  it("parses set elements (prefixes and single addresses) and the layout marker", () => {
    const live = nft.parseListTable(ok(testdata("nft-list-table.json")));
    expect(live?.sets["strict4"]).toEqual(["198.51.100.128/26", "198.51.100.64/26"]);
    expect(live?.sets["local6"]).toEqual([]);
    expect(live?.layout).toBeUndefined();
    const marked = nft.parseListTable(ok(testdata("nft-list-table-empty-set.json")));
    expect(marked?.layout).toBe("cloak-netd layout=1 if=x");
    expect(nft.parseListTable(ok(testdata("nft-list-table-comment.json")))?.sets["strict4"]).toEqual(["192.0.2.5/32", "198.51.100.0/26"]);
  });

  it("treats a missing table as absent", () => {
    expect(nft.parseListTable({ exitCode: 1, stdout: "", stderr: "Error: No such file or directory\nlist table inet nope\n" })).toBeUndefined();
  });
});

describe("the strict table", () => {
  it("is current only when the layout and every set match", () => {
    const sets = nft.desiredSets(rules);
    const live = { layout: nft.layoutMarker(rules), sets };
    expect(nft.isCurrent(live, rules)).toBe(true);
    expect(nft.isCurrent({ ...live, layout: "cloak-netd layout=0 if=cloak-wg0" }, rules)).toBe(false);
    expect(nft.isCurrent({ ...live, sets: { ...sets, strict4: [] } }, rules)).toBe(false);
    expect(nft.isCurrent(undefined, rules)).toBe(false);
  });

  it("is replaced in one transaction that tolerates a missing table", () => {
    const cmd = nft.replaceTable(rules);
    expect(cmd.args).toEqual(["-f", "-"]);
    const lines = String(cmd.input).split("\n");
    expect(lines.slice(0, 3)).toEqual(["table inet cloak-netd {}", "delete table inet cloak-netd", "table inet cloak-netd {"]);
    expect(cmd.input).toContain("set strict4 { type ipv4_addr; flags interval; elements = { 198.51.100.128/26, 198.51.100.64/26 }; }");
    expect(cmd.input).toContain("set local6 { type ipv6_addr; flags interval; }");
    expect(cmd.input).toContain('ip daddr @strict4 ip daddr != @local4 counter drop');
    expect(cmd.input).toContain('oifname "cloak-wg0" accept');
  });

  it("changes only the elements that differ, deletions first, in one transaction", () => {
    const base = { table: "cloak-netd", iface: "w0", local: ["198.51.100.0/26"] };
    const c = nft.updateElements({ ...base, strict: ["198.51.100.64/26", "fd00:cd:2::/64"] }, { ...base, strict: ["198.51.100.128/26", "fd00:cd:2::/64"] });
    expect(c?.input).toBe("delete element inet cloak-netd strict4 { 198.51.100.64/26 }\nadd element inet cloak-netd strict4 { 198.51.100.128/26 }\n");
    expect(nft.updateElements({ ...base, strict: ["fd00::/8"] }, { ...base, strict: ["fd00::/8"] })).toBeUndefined();
    const both = nft.updateElements(
      { ...base, strict: ["198.51.100.64/26", "fd00:cd:2::/64", "fd00:cd:3::/64"], local: ["198.51.100.0/26", "fd00:cd:1::/64"] },
      { ...base, strict: ["198.51.100.64/26", "fd00:cd:4::/64"], local: ["198.51.100.0/26", "fd00:cd:9::/64"] },
    );
    expect(both?.input).toBe(
      [
        "delete element inet cloak-netd strict6 { fd00:cd:2::/64, fd00:cd:3::/64 }",
        "delete element inet cloak-netd local6 { fd00:cd:1::/64 }",
        "add element inet cloak-netd strict6 { fd00:cd:4::/64 }",
        "add element inet cloak-netd local6 { fd00:cd:9::/64 }",
        "",
      ].join("\n"),
    );
  });
});
