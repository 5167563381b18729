import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { isEmptyChange, parseDump, set, showDump } from "./wg.js";

const testdata = (name: string) => readFileSync(join(import.meta.dirname, "testdata", name), "utf8");

describe("wg show dump", () => {
  it("parses the device line and every peer, and drops the private key", () => {
    // Captured from wireguard-go 0.0.20220316 with wireguard-tools 1.0.20210914.
    const device = parseDump(testdata("wg-show-dump.txt"));
    expect(device).toEqual({
      publicKey: "WMkSiKn5qwntdu23siCZMq4SFOPkvks4Mp+X/9Q4ABM=",
      listenPort: 51872,
      fwmark: 0x10cd,
      peers: [
        {
          publicKey: "0OhsQ9z6yYpY0rhKXZKceGZi0+qBR+zJuJeA/9VaUDg=",
          endpoint: undefined,
          allowedIPs: [],
          latestHandshake: 0,
          rxBytes: 0,
          txBytes: 0,
          persistentKeepalive: undefined,
        },
        {
          publicKey: "n0Ae/Lx526t2kDxbXOv1k7NjTIS6jn7So/a1nKEcYUI=",
          endpoint: "192.0.2.12:51872",
          allowedIPs: ["198.51.100.64/26", "192.0.2.12/32", "fd00:cd:2::/64"],
          latestHandshake: 0,
          rxBytes: 0,
          txBytes: 0,
          persistentKeepalive: 25,
        },
        {
          publicKey: "v3JFLo+tceljRoQy2ZvDGS2NLhPtBhouNpPi/m6AUT8=",
          endpoint: "[fd00:cd::13]:51872",
          allowedIPs: ["198.51.100.128/26"],
          latestHandshake: 0,
          rxBytes: 0,
          txBytes: 0,
          persistentKeepalive: undefined,
        },
      ],
    });
    expect(JSON.stringify(device)).not.toContain("YEyWtqlfwnIzdJ1mRNnmW9yqtP9rs4pVAPgRk8sKHmU=");
  });

  it("reads handshake and transfer counters and an off fwmark", () => {
    const text = "PRIV\tPUB=\t51872\toff\nPEER=\t(none)\t192.0.2.1:1\t10.0.0.0/8\t1700000000\t123\t456\toff\n";
    const device = parseDump(text);
    expect(device.fwmark).toBe(0);
    expect(device.peers[0]).toMatchObject({ latestHandshake: 1700000000, rxBytes: 123, txBytes: 456 });
  });

  it("refuses output that is not a dump", () => {
    expect(() => parseDump("")).toThrow(/unexpected wg dump header/);
    expect(() => parseDump("a\tb\tc\td\nshort line\n")).toThrow(/peer line/);
  });

  it("builds show dump for one interface", () => {
    expect(showDump("cloak-wg0").args).toEqual(["show", "cloak-wg0", "dump"]);
  });
});

describe("wg set", () => {
  it("puts a whole change set in one invocation; the key by file path, never in argv", () => {
    const cmd = set("cloak-wg0", {
      privateKeyFile: "/var/lib/cloak/netd/private.key",
      listenPort: 51872,
      fwmark: 0xc10000,
      peers: [
        { publicKey: "A=", endpoint: "[fd00::1]:51872", allowedIPs: ["198.51.100.0/26", "fd00:cd:1::/64"], persistentKeepalive: undefined },
        { publicKey: "B=", endpoint: undefined, allowedIPs: [], persistentKeepalive: 25 },
        { publicKey: "C=", remove: true },
      ],
    });
    expect(cmd.file).toBe("wg");
    expect(cmd.args).toEqual([
      "set", "cloak-wg0",
      "private-key", "/var/lib/cloak/netd/private.key",
      "listen-port", "51872",
      "fwmark", "0xc10000",
      "peer", "A=", "endpoint", "[fd00::1]:51872", "allowed-ips", "198.51.100.0/26,fd00:cd:1::/64", "persistent-keepalive", "off",
      "peer", "B=", "allowed-ips", "", "persistent-keepalive", "25",
      "peer", "C=", "remove",
    ]);
    expect(cmd.input).toBeUndefined();
  });

  it("knows an empty change", () => {
    expect(isEmptyChange({ peers: [] })).toBe(true);
    expect(isEmptyChange({ peers: [], listenPort: 1 })).toBe(false);
    expect(set("x", { peers: [], fwmark: 0 }).args).toEqual(["set", "x", "fwmark", "off"]);
  });
});
