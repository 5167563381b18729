import { describe, expect, it } from "vitest";
import { diffDevice, diffRoutes, diffRules, type DeviceWant } from "./diff.js";
import type { LiveDevice, LivePeer } from "./tools/wg.js";
import type { Rule } from "./tools/ip.js";

const live = (peers: Array<Partial<LivePeer> & { publicKey: string }>, over: Partial<LiveDevice> = {}): LiveDevice => ({
  publicKey: "SELF=",
  listenPort: 51872,
  fwmark: 0xc10000,
  peers: peers.map((p) => ({ endpoint: undefined, allowedIPs: [], latestHandshake: 0, rxBytes: 0, txBytes: 0, persistentKeepalive: undefined, ...p })),
  ...over,
});

const want = (peers: Array<{ publicKey: string; allowedIPs: string[]; endpoint?: string }>): DeviceWant => ({
  publicKey: "SELF=",
  privateKeyFile: "/k",
  listenPort: 51872,
  fwmark: 0xc10000,
  peers: peers.map((p) => ({ node: p.publicKey, endpoint: p.endpoint, allowedIPs: p.allowedIPs, persistentKeepalive: undefined, publicKey: p.publicKey })),
});

describe("diffDevice", () => {
  it("changes nothing when live matches (allowed-ips compared as sets, canonically)", () => {
    const change = diffDevice(
      live([{ publicKey: "A=", endpoint: "192.0.2.12:51872", allowedIPs: ["fd00:cd:2::/64", "198.51.100.64/26"] }]),
      want([{ publicKey: "A=", endpoint: "192.0.2.12:51872", allowedIPs: ["198.51.100.64/26", "fd00:cd:2::/64"] }]),
    );
    expect(change).toEqual({ peers: [] });
  });

  it("sets the key (by file), port and fwmark only when they differ", () => {
    const change = diffDevice(live([], { publicKey: "OLD=", listenPort: 0, fwmark: 0 }), want([]));
    expect(change).toEqual({ privateKeyFile: "/k", listenPort: 51872, fwmark: 0xc10000, peers: [] });
  });

  it("adds new peers, updates changed ones, removes stale ones last", () => {
    const change = diffDevice(
      live([
        { publicKey: "A=", endpoint: "192.0.2.12:51872", allowedIPs: ["198.51.100.64/26"] },
        { publicKey: "GONE=", allowedIPs: ["198.51.100.192/26"] },
      ]),
      want([
        { publicKey: "A=", endpoint: "192.0.2.99:51872", allowedIPs: ["198.51.100.64/26"] },
        { publicKey: "NEW=", endpoint: "192.0.2.13:51872", allowedIPs: ["198.51.100.128/26"] },
      ]),
    );
    expect(change.peers.map((p) => [p.publicKey, p.remove === true])).toEqual([
      ["NEW=", false],
      ["A=", false],
      ["GONE=", true],
    ]);
  });

  it("moves a prefix by setting its new owner before its old one: never routed to neither", () => {
    const change = diffDevice(
      live([
        { publicKey: "OLD=", allowedIPs: ["198.51.100.64/26", "198.51.100.128/26"] },
        { publicKey: "NEW=", allowedIPs: ["198.51.100.192/26"] },
      ]),
      want([
        { publicKey: "OLD=", allowedIPs: ["198.51.100.128/26"] },
        { publicKey: "NEW=", allowedIPs: ["198.51.100.192/26", "198.51.100.64/26"] },
      ]),
    );
    expect(change.peers.map((p) => p.publicKey)).toEqual(["NEW=", "OLD="]);
  });

  it("a key change (rotation) adds the new peer before removing the old one", () => {
    const change = diffDevice(
      live([{ publicKey: "OLDKEY=", allowedIPs: ["198.51.100.64/26"] }]),
      want([{ publicKey: "NEWKEY=", allowedIPs: ["198.51.100.64/26"] }]),
    );
    expect(change.peers).toEqual([
      { publicKey: "NEWKEY=", endpoint: undefined, allowedIPs: ["198.51.100.64/26"], persistentKeepalive: undefined },
      { publicKey: "OLDKEY=", remove: true },
    ]);
  });
});

describe("diffRoutes", () => {
  it("replaces missing or misdirected routes first, deletes stale ones after", () => {
    const changes = diffRoutes(
      [
        { dst: "198.51.100.64/26", dev: "w0" },
        { dst: "198.51.100.128/26", dev: "eth0" },
        { dst: "fd00:cd:9::/64", dev: "w0" },
      ],
      ["198.51.100.64/26", "198.51.100.128/26", "fd00:cd:2::/64"],
      "w0",
      51872,
    );
    expect(changes).toEqual([
      { op: "replace", dst: "198.51.100.128/26", dev: "w0", table: 51872 },
      { op: "replace", dst: "fd00:cd:2::/64", dev: "w0", table: 51872 },
      { op: "delete", dst: "fd00:cd:9::/64", table: 51872 },
    ]);
  });

  it("does nothing when the table is right", () => {
    expect(diffRoutes([{ dst: "198.51.100.64/26", dev: "w0" }], ["198.51.100.64/26"], "w0", 1)).toEqual([]);
  });
});

describe("diffRules", () => {
  const rule: Rule = { family: 4, priority: 5172, table: 51872, fwmark: 0xc10000, fwmask: 0xff0000, invert: true };
  it("adds missing rules and removes netd's own stale ones, leaving others' alone", () => {
    const stale = { ...rule, priority: 100 };
    const foreign = { ...rule, table: 99 };
    expect(diffRules([stale, foreign], [rule], 51872)).toEqual({ add: [rule], remove: [stale] });
    expect(diffRules([rule], [rule], 51872)).toEqual({ add: [], remove: [] });
  });
});
