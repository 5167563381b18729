import { describe, expect, it } from "vitest";
import { InvalidArgumentError } from "../../lib/errors.js";
import { parseCsiConfig } from "../config.js";

// `cloak csi --wrap`: csi/config.ts's part for the wrapper.
describe("--wrap", () => {
  const keys = ["--key-dir", "/k"];

  it("serves one service per process, with the inner driver's socket and a default inner root under kubelet's plugins", () => {
    const config = parseCsiConfig(["--wrap", "unix:///var/lib/kubelet/plugins/ebs.csi.aws.com/csi.sock", "--services", "node", "--driver-name", "ebs.cloak.dev", ...keys], {});
    expect(config.wrap).toEqual({
      endpoint: { kind: "unix", path: "/var/lib/kubelet/plugins/ebs.csi.aws.com/csi.sock" },
      innerRoot: "/var/lib/kubelet/plugins/kubernetes.io/csi/ebs.cloak.dev/inner",
    });
    expect(config.services).toEqual(["node"]);
  });

  it("refuses both services in one process: the inner node and controller sockets are in different places", () => {
    expect(() => parseCsiConfig(["--wrap", "/inner.sock", ...keys], {})).toThrow(/one CSI service per process/);
  });

  it("lets the controller run without a key source, and only the controller", () => {
    expect(parseCsiConfig(["--wrap", "/inner.sock", "--services", "controller"], {}).keySource).toEqual({ kind: "none" });
    expect(() => parseCsiConfig(["--wrap", "/inner.sock", "--services", "node"], {})).toThrow(/a key source is required/);
    expect(() => parseCsiConfig(["--services", "controller"], {})).toThrow(/a key source is required/);
  });

  it("refuses an inner root that is not an absolute, normalised path, and an inner root without --wrap", () => {
    for (const root of ["relative", "/a/../b", "/a/"]) {
      expect(() => parseCsiConfig(["--wrap", "/i.sock", "--services", "node", "--inner-root", root, ...keys], {})).toThrow(InvalidArgumentError);
    }
    expect(() => parseCsiConfig(["--inner-root", "/x", ...keys], {})).toThrow(/needs --wrap/);
  });

  it("leaves the local source's configuration as it was", () => {
    expect(parseCsiConfig(keys, {})).toMatchObject({ wrap: undefined, services: ["controller", "node"], keySource: { kind: "file", dir: "/k" } });
  });
});
