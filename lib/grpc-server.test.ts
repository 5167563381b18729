import { describe, expect, it } from "vitest";
import { InvalidArgumentError } from "./errors.js";
import { formatEndpoint, parseEndpoint } from "./grpc-server.js";

describe("parseEndpoint", () => {
  it.each([
    ["unix:///csi/csi.sock", { kind: "unix", path: "/csi/csi.sock" }],
    ["unix:/csi/csi.sock", { kind: "unix", path: "/csi/csi.sock" }],
    ["/csi/csi.sock", { kind: "unix", path: "/csi/csi.sock" }],
    ["0.0.0.0:9000", { kind: "tcp", host: "0.0.0.0", port: 9000 }],
    ["tcp://keys.example:443", { kind: "tcp", host: "keys.example", port: 443 }],
    ["[::1]:9000", { kind: "tcp", host: "::1", port: 9000 }],
  ])("reads %s", (text, endpoint) => {
    expect(parseEndpoint(text)).toEqual(endpoint);
  });

  it.each(["unix://relative/path", "localhost", "host:99999", ":9000", ""])("refuses %j", (text) => {
    expect(() => parseEndpoint(text)).toThrow(InvalidArgumentError);
  });

  it("writes endpoints back in the form grpc-js binds", () => {
    expect(formatEndpoint({ kind: "unix", path: "/csi/csi.sock" })).toBe("unix:///csi/csi.sock");
    expect(formatEndpoint({ kind: "tcp", host: "::1", port: 9000 })).toBe("[::1]:9000");
  });
});
