import { describe, expect, it } from "vitest";
import { InvalidArgumentError } from "../lib/errors.js";
import { parseCsiConfig } from "./config.js";

// The flags of the health endpoint and of kubelet registration (csi/health/, csi/registration/).
const base = ["--key-dir", "/keys"];
const parse = (args: string[]) => parseCsiConfig([...base, ...args], {});

describe("health and registration flags", () => {
  it("are off unless asked for: two plugins on one host must not fight over a port or a registry", () => {
    const config = parse([]);
    expect(config.healthListen).toBeUndefined();
    expect(config.registration).toBeUndefined();
    expect(config.keySourceProbeIntervalMs).toBe(10_000);
  });

  it("read the manifests' values", () => {
    const config = parse(["--health-listen=0.0.0.0:9808", "--registration-dir=/registration", "--key-source-probe-interval=2.5"]);
    expect(config.healthListen).toEqual({ kind: "tcp", host: "0.0.0.0", port: 9808 });
    expect(config.registration).toEqual({ dir: "/registration", kubeletEndpoint: "/var/lib/kubelet/plugins/csi.cloak.dev/csi.sock" });
    expect(config.keySourceProbeIntervalMs).toBe(2_500);
  });

  it("report the endpoint kubelet sees, following the driver name unless given", () => {
    expect(parse(["--registration-dir=/r", "--driver-name=encrypted.example.com"]).registration?.kubeletEndpoint).toBe(
      "/var/lib/kubelet/plugins/encrypted.example.com/csi.sock",
    );
    expect(parse(["--registration-dir=/r", "--kubelet-endpoint=unix:///var/lib/k/plugins/x/csi.sock"]).registration?.kubeletEndpoint).toBe(
      "/var/lib/k/plugins/x/csi.sock",
    );
  });

  it.each([
    [["--health-listen=/tmp/health.sock"], /--health-listen takes host:port/],
    [["--health-listen=nonsense"], /neither unix/],
    [["--kubelet-endpoint=/x.sock"], /--kubelet-endpoint needs --registration-dir/],
    [["--registration-dir=relative"], /must be absolute/],
    [["--registration-dir=/r", "--kubelet-endpoint=10.0.0.1:9000"], /must be a unix socket path/],
    [["--key-source-probe-interval=0"], /between 0.1 and 3600/],
    [["--key-source-probe-interval=soon"], /between 0.1 and 3600/],
  ])("refuse %j", (args, message) => {
    expect(() => parse(args)).toThrow(InvalidArgumentError);
    expect(() => parse(args)).toThrow(message);
  });
});
