import { describe, expect, it } from "vitest";
import { parseKeyServiceArgs } from "../config.js";

const base = ["--allow", "spiffe://cloak/ns/cloak-system/sa/cloak-csi-node"];

describe("cloak keyservice --kms", () => {
  it("reads the wrapped master secret, bound to a cluster id, with the defaults", () => {
    const config = parseKeyServiceArgs([...base, "--kms", "unix:///run/kms/kms.sock", "--cluster-id", "prod-eu-1"]);
    expect(config.kms).toEqual({
      endpoint: "unix:///run/kms/kms.sock",
      wrappedMasterSecretFile: "/etc/cloak/keys/master-secret.wrapped",
      clusterId: "prod-eu-1",
      statusIntervalMs: 60_000,
      recheckIntervalMs: 300_000,
      timeoutMs: 5_000,
    });
    expect(parseKeyServiceArgs(base).kms).toBeUndefined();
    expect(parseKeyServiceArgs(base).masterSecretFile).toBe("/etc/cloak/keys/master-secret");
  });

  it.each([
    [["--kms", "unix:///k.sock"], /--kms needs --cluster-id/],
    [["--kms", "127.0.0.1:9000", "--cluster-id", "c"], /--kms must be unix:\/\/\/path/],
    [["--kms", "unix:///k.sock", "--cluster-id", "c", "--master-secret", "/s"], /do not also give --master-secret/],
    [["--cluster-id", "c"], /--cluster-id needs --kms/],
    [["--kms", "unix:///k.sock", "--cluster-id", "a b"], /--cluster-id: cluster id "a b" must be/],
    [["--kms", "unix:///k.sock", "--cluster-id", "c", "--kms-recheck-interval-ms", "0"], /--kms-recheck-interval-ms must be a positive integer/],
  ])("refuses %j", (args, message) => {
    expect(() => parseKeyServiceArgs([...base, ...args])).toThrow(message);
  });
});
