import { describe, expect, it } from "vitest";
import { nodeInfo, PORT_ANNOTATION, PUBLIC_KEY_ANNOTATION } from "./nodes.js";

const KEY = "OIflxh+Ly9cPY2hfHIF6q7qF7UkIPTw2J1I/UyQKU1g=";

describe("nodeInfo", () => {
  it("reads key, port, InternalIPs and pod CIDRs from a Node", () => {
    const info = nodeInfo({
      metadata: { name: "n2", creationTimestamp: "2026-01-01T00:00:00Z", annotations: { [PUBLIC_KEY_ANNOTATION]: KEY, [PORT_ANNOTATION]: "51999" } },
      spec: { podCIDR: "198.51.100.64/26", podCIDRs: ["198.51.100.64/26", "FD00:CD:2::/64"] },
      status: {
        addresses: [
          { type: "Hostname", address: "n2" },
          { type: "InternalIP", address: "192.0.2.12" },
          { type: "ExternalIP", address: "203.0.113.12" },
          { type: "InternalIP", address: "fd00:cd:0::12" },
        ],
      },
    });
    expect(info).toEqual({
      name: "n2",
      publicKey: KEY,
      port: 51999,
      internalIPs: ["192.0.2.12", "fd00:cd::12"],
      podCIDRs: ["198.51.100.64/26", "fd00:cd:2::/64"],
      created: Date.parse("2026-01-01T00:00:00Z"),
      problems: [],
    });
  });

  it("uses spec.podCIDR when podCIDRs is absent, and reports bad values instead of using them", () => {
    const info = nodeInfo({
      metadata: { name: "n3", annotations: { [PUBLIC_KEY_ANNOTATION]: "not-a-key", [PORT_ANNOTATION]: "70000" } },
      spec: { podCIDR: "198.51.100.128/26" },
    });
    expect(info.publicKey).toBeUndefined();
    expect(info.port).toBeUndefined();
    expect(info.podCIDRs).toEqual(["198.51.100.128/26"]);
    expect(info.problems).toEqual([
      `annotation ${PUBLIC_KEY_ANNOTATION} is not a WireGuard public key`,
      `annotation ${PORT_ANNOTATION} is not a port: "70000"`,
    ]);
    expect(nodeInfo({ metadata: { name: "x" }, spec: { podCIDRs: ["bogus"] } }).problems).toEqual(['podCIDR "bogus" is not a prefix']);
  });
});
