import { describe, expect, it } from "vitest";
import { DEFAULTS, parseCommand } from "./config.js";

describe("parseCommand", () => {
  it("applies defaults that collide with no other mesh, and NODE_NAME from the environment", () => {
    const { command, config } = parseCommand(["run"], { NODE_NAME: "node-a" });
    expect(command).toBe("run");
    expect(config).toMatchObject({
      nodeName: "node-a",
      iface: "cloak-wg0",
      listenPort: 51872,
      keyFile: "/var/lib/cloak/netd/private.key",
      mtu: undefined,
      mtuOverhead: undefined,
      implementation: "auto",
      strict: true,
      clusterCIDRs: [],
      nodeEncryption: false,
      metricsAddress: "127.0.0.1:9478",
      metricsAddressGiven: false,
    });
    expect([51820, 51821, 51871]).not.toContain(DEFAULTS.listenPort);
  });

  it("is strict unless told otherwise, and serves its metrics on the node's address (NODE_IP) or loopback, never on every interface", () => {
    expect(parseCommand(["run", "--no-strict"], {}).config.strict).toBe(false);
    expect(parseCommand(["run"], { NODE_IP: "192.0.2.11" }).config.metricsAddress).toBe("192.0.2.11:9478");
    expect(parseCommand(["run"], { NODE_IP: "fd00:cd::11" }).config.metricsAddress).toBe("[fd00:cd::11]:9478");
    expect(parseCommand(["run"], {}).config.metricsAddress).toBe("127.0.0.1:9478");
  });

  it("reads every flag", () => {
    const { config, purge } = parseCommand(
      ["cleanup", "--node-name=x", "--interface=wg9", "--port=5000", "--state-dir=/s", "--mtu=1400", "--implementation=userspace",
        "--strict", "--cluster-cidr=198.51.100.0/24,fd00:cd::/48", "--cluster-cidr=fd00::/8", "--mtu-overhead=70", "--metrics-address=[::1]:9000", "--node-encryption", "--endpoint-family=ipv6",
        "--fwmark=0x20000", "--fwmark-mask=0xf0000", "--persistent-keepalive=25", "--resync-interval=10", "--purge"],
      {},
    );
    expect(config).toMatchObject({
      nodeName: "x", iface: "wg9", listenPort: 5000, keyFile: "/s/private.key", mtu: 1400, implementation: "userspace",
      strict: true, clusterCIDRs: ["198.51.100.0/24", "fd00:cd::/48", "fd00::/8"], nodeEncryption: true, endpointFamily: 6,
      mtuOverhead: 70, metricsAddress: "[::1]:9000", metricsAddressGiven: true,
      fwmark: 0x20000, fwmask: 0xf0000, persistentKeepalive: 25, resyncIntervalMs: 10_000,
    });
    expect(purge).toBe(true);
  });

  it.each([
    [["run", "--port=0"], /--port must be an integer/],
    [["run", "--implementation=bpf"], /--implementation must be/],
    [["run", "--cluster-cidr=10.0.0.0/8,nope"], /not a prefix/],
    [["run", "--interface=way-too-long-name0"], /not a valid link name/],
    [["run", "--fwmark=0x1", "--fwmark-mask=0x10"], /outside --fwmark-mask/],
    [["run", "--bogus"], /Unknown option/],
    [["run", "extra"], /unexpected argument/],
  ])("refuses %j", (argv, message) => {
    expect(() => parseCommand(argv, {})).toThrow(message);
  });
});
