import { describe, expect, it } from "vitest";
import { InvalidArgumentError } from "../lib/errors.js";
import { checkInsecureEndpoint, isLoopback, parseKeyServiceArgs } from "./config.js";

describe("parseKeyServiceArgs", () => {
  it("defaults to mutual TLS with the Secret-volume paths", () => {
    const config = parseKeyServiceArgs(["--allow", "spiffe://cloak/ns/a/sa/b"]);
    expect(config.tls).toEqual({ certFile: "/etc/cloak/tls/tls.crt", keyFile: "/etc/cloak/tls/tls.key", clientCaFile: "/etc/cloak/tls/ca.crt" });
    expect(config.listen).toEqual({ kind: "tcp", host: "0.0.0.0", port: 9000 });
    expect(config.metricsListen).toEqual({ kind: "tcp", host: "0.0.0.0", port: 9464 });
    expect(config.allow).toEqual(["spiffe://cloak/ns/a/sa/b"]);
  });

  it("requires someone to be allowed", () => {
    expect(() => parseKeyServiceArgs([])).toThrow(/no --allow/);
    expect(parseKeyServiceArgs(["--allow-file", "/x"]).allowFile).toBe("/x");
  });

  it("allows development mode without TLS only on a unix socket or loopback", () => {
    expect(parseKeyServiceArgs(["--insecure-dev", "--listen", "127.0.0.1:1"]).tls).toBeUndefined();
    expect(parseKeyServiceArgs(["--insecure-dev", "--listen", "unix:///run/ks.sock"]).tls).toBeUndefined();
    expect(parseKeyServiceArgs(["--insecure-dev", "--listen", "[::1]:1"]).tls).toBeUndefined();
    expect(() => parseKeyServiceArgs(["--insecure-dev"])).toThrow(/only on a unix socket or a loopback address, not 0.0.0.0/);
    expect(() => parseKeyServiceArgs(["--insecure-dev", "--listen", "10.1.2.3:9000"])).toThrow(InvalidArgumentError);
    expect(() => parseKeyServiceArgs(["--insecure-dev", "--tls-cert", "/c", "--listen", "127.0.0.1:1"])).toThrow(/turns TLS off/);
  });

  it("turns metrics off with an empty address and refuses nonsense", () => {
    expect(parseKeyServiceArgs(["--allow", "a.example", "--metrics-listen", ""]).metricsListen).toBeUndefined();
    expect(() => parseKeyServiceArgs(["--allow", "a.example", "--metrics-listen", "unix:///m"])).toThrow(/host:port/);
    expect(() => parseKeyServiceArgs(["--allow", "a.example", "--reload-interval-ms", "0"])).toThrow(/positive integer/);
    expect(() => parseKeyServiceArgs(["--allow", "a.example", "--bogus"])).toThrow(InvalidArgumentError);
  });
});

describe("loopback", () => {
  it.each([
    ["127.0.0.1", true],
    ["127.8.9.1", true],
    ["::1", true],
    ["0:0:0:0:0:0:0:1", true],
    ["localhost", true],
    ["0.0.0.0", false],
    ["::", false],
    ["10.0.0.1", false],
    ["127.example.com", false],
  ])("%s → %s", (host, expected) => {
    expect(isLoopback(host)).toBe(expected);
    if (!expected) expect(() => checkInsecureEndpoint({ kind: "tcp", host, port: 1 })).toThrow(InvalidArgumentError);
  });
});
