import { describe, expect, it } from "vitest";
import { AllowListError, compileAllowList, parseAllowListFile } from "./authz.js";

const id = (uris: string[], dnsNames: string[] = []) => ({ uris, dnsNames });

describe("allow-list", () => {
  const list = compileAllowList([
    "spiffe://cloak/ns/cloak-system/sa/cloak-csi-node",
    "spiffe://cloak/ns/*/sa/backup",
    "*.nodes.example",
    "Admin.Example",
  ]);

  it("admits exact URIs and names which one matched", () => {
    expect(list.match(id(["spiffe://cloak/ns/cloak-system/sa/cloak-csi-node"]))).toEqual({
      entry: "spiffe://cloak/ns/cloak-system/sa/cloak-csi-node",
      name: "spiffe://cloak/ns/cloak-system/sa/cloak-csi-node",
    });
  });

  it("lets * stand for exactly one segment", () => {
    expect(list.match(id(["spiffe://cloak/ns/team-a/sa/backup"]))).toBeDefined();
    expect(list.match(id(["spiffe://cloak/ns/a/b/sa/backup"]))).toBeUndefined();
    expect(list.match(id(["spiffe://cloak/ns//sa/backup"]))).toBeUndefined();
    expect(list.match(id([], ["n1.nodes.example"]))).toBeDefined();
    expect(list.match(id([], ["a.n1.nodes.example"]))).toBeUndefined();
    expect(list.match(id([], ["nodes.example"]))).toBeUndefined();
  });

  it("matches URIs case-sensitively and DNS names case-insensitively, each only against its own kind", () => {
    expect(list.match(id(["SPIFFE://cloak/ns/cloak-system/sa/cloak-csi-node"]))).toBeUndefined();
    expect(list.match(id([], ["admin.example"]))).toBeDefined();
    expect(list.match(id(["admin.example"]))).toBeUndefined();
    expect(list.match(id([], ["spiffe://cloak/ns/cloak-system/sa/cloak-csi-node"]))).toBeUndefined();
  });

  it("treats regex characters literally", () => {
    const dotted = compileAllowList(["a.b.example"]);
    expect(dotted.match(id([], ["aXb.example"]))).toBeUndefined();
  });

  it("refuses entries that admit everyone or cannot be what was meant", () => {
    for (const bad of ["*", "**", "spiffe://*", "", " a.example", "a.example,b.example", "a b"]) {
      expect(() => compileAllowList([bad]), bad).toThrow(AllowListError);
    }
  });

  it("reads files with comments and blank lines", () => {
    expect(parseAllowListFile("# nodes\nspiffe://cloak/ns/x/sa/y  # the csi node\n\n  b.example\n")).toEqual([
      "spiffe://cloak/ns/x/sa/y",
      "b.example",
    ]);
  });
});
