import { describe, expect, it } from "vitest";
import { canonicalAddress, formatEndpoint, isPrefix, outermostPrefixes, parsePrefix } from "./cidr.js";

describe("prefixes", () => {
  it.each([
    ["192.0.2.1", "192.0.2.1/32", 4],
    ["192.0.2.77/26", "192.0.2.64/26", 4],
    ["0.0.0.0/0", "0.0.0.0/0", 4],
    ["FD00:CD:0:0::1", "fd00:cd::1/128", 6],
    ["fd00:cd:2:0:1::/64", "fd00:cd:2::/64", 6],
    ["::/0", "::/0", 6],
  ])("%s → %s", (text, canonical, family) => {
    expect(parsePrefix(text)).toEqual({ text: canonical, family });
  });

  it.each(["", "192.0.2.0/33", "192.0.2.0/", "fd00::/129", "host/24", "192.0.2.0/-1", "192.0.2.0/08x"])("refuses %j", (text) => {
    expect(isPrefix(text)).toBe(false);
  });

  it("formats endpoints, bracketing IPv6", () => {
    expect(formatEndpoint("192.0.2.1", 51872)).toBe("192.0.2.1:51872");
    expect(formatEndpoint("fd00:cd:0::11", 51872)).toBe("[fd00:cd::11]:51872");
    expect(canonicalAddress("FD00::0:1")).toBe("fd00::1");
    expect(() => canonicalAddress("nope")).toThrow(/not an IP address/);
  });
});

describe("outermostPrefixes", () => {
  it("keeps only prefixes no other one contains (an nftables interval set refuses overlaps)", () => {
    expect(
      outermostPrefixes(["10.1.2.0/24", "10.0.0.0/8", "10.1.0.0/16", "11.0.0.0/24", "9.255.255.0/24", "fd00:1::/64", "fd00::/8", "fe80::/64", "10.0.0.0/8", "0.0.0.10/32"]),
    ).toEqual(["0.0.0.10/32", "10.0.0.0/8", "11.0.0.0/24", "9.255.255.0/24", "fd00::/8", "fe80::/64"]);
  });

  it("keeps neighbours and both families apart", () => {
    expect(outermostPrefixes(["10.0.0.0/25", "10.0.0.128/25", "::/0", "128.0.0.0/1"])).toEqual(["10.0.0.0/25", "10.0.0.128/25", "128.0.0.0/1", "::/0"]);
  });
});
