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
      mtuOverhead: 80,
      implementation: "auto",
      strict: false,
      nodeEncryption: false,
      metricsAddress: "0.0.0.0:9478",
    });
    expect([51820, 51821, 51871]).not.toContain(DEFAULTS.listenPort);
  });

  it("reads every flag", () => {
    const { config, purge } = parseCommand(
      ["cleanup", "--node-name=x", "--interface=wg9", "--port=5000", "--state-dir=/s", "--mtu=1400", "--implementation=userspace",
        "--strict", "--strict-cidr=198.51.100.0/24", "--strict-cidr=fd00::/8", "--node-encryption", "--endpoint-family=ipv6",
        "--fwmark=0x20000", "--fwmark-mask=0xf0000", "--persistent-keepalive=25", "--resync-interval=10", "--purge"],
      {},
    );
    expect(config).toMatchObject({
      nodeName: "x", iface: "wg9", listenPort: 5000, keyFile: "/s/private.key", mtu: 1400, implementation: "userspace",
      strict: true, strictCIDRs: ["198.51.100.0/24", "fd00::/8"], nodeEncryption: true, endpointFamily: 6,
      fwmark: 0x20000, fwmask: 0xf0000, persistentKeepalive: 25, resyncIntervalMs: 10_000,
    });
    expect(purge).toBe(true);
  });

  it.each([
    [["run", "--port=0"], /--port must be an integer/],
    [["run", "--implementation=bpf"], /--implementation must be/],
    [["run", "--strict-cidr=nope"], /not a prefix/],
    [["run", "--interface=way-too-long-name0"], /not a valid link name/],
    [["run", "--fwmark=0x1", "--fwmark-mask=0x10"], /outside --fwmark-mask/],
    [["run", "--bogus"], /Unknown option/],
    [["run", "extra"], /unexpected argument/],
  ])("refuses %j", (argv, message) => {
    expect(() => parseCommand(argv, {})).toThrow(message);
  });
});
