import { describe, expect, it } from "vitest";
import { KeyMaterialError } from "../../lib/data-key.js";
import { KekDeniedError } from "./backend.js";
import { checkClusterId, formatEnvelope, openContext, parseEnvelope, sealContext, type Envelope } from "./envelope.js";

const envelope: Envelope = {
  backend: "kmsv2",
  keyId: "kek-1",
  ciphertext: Buffer.from("opaque ciphertext"),
  annotations: { "format.example.com": Buffer.from("v1") },
  wrappedAt: "2026-12-01T00:00:00.000Z",
};

describe("the envelope", () => {
  it("round-trips through its JSON form", () => {
    const text = formatEnvelope(envelope);
    expect(JSON.parse(text)).toMatchObject({ kind: "cloak.dev/wrapped-master-secret", version: 1, backend: "kmsv2", keyId: "kek-1" });
    expect(parseEnvelope(text, "f")).toEqual(envelope);
  });

  it.each([
    ["a plain secret", "\u0001\u0002random bytes", /f is not a wrapped master secret \(not JSON\); it looks like a plain master secret/],
    ["another JSON document", '{"kind":"x"}', /kind is not cloak.dev\/wrapped-master-secret/],
    ["a newer version", '{"kind":"cloak.dev/wrapped-master-secret","version":2}', /envelope version 2; this cloak reads version 1/],
    ["no ciphertext", '{"kind":"cloak.dev/wrapped-master-secret","version":1,"backend":"kmsv2","keyId":"k"}', /ciphertext is missing/],
    ["bad base64", '{"kind":"cloak.dev/wrapped-master-secret","version":1,"backend":"kmsv2","keyId":"k","ciphertext":"a*b="}', /ciphertext is not base64/],
    ["a bad annotation", '{"kind":"cloak.dev/wrapped-master-secret","version":1,"backend":"kmsv2","keyId":"k","ciphertext":"AAAA","annotations":{"a":1}}', /annotation a is not a base64 string/],
  ])("refuses %s", (_name, text, message) => {
    expect(() => parseEnvelope(text, "f")).toThrow(KeyMaterialError);
    expect(() => parseEnvelope(text, "f")).toThrow(message);
  });
});

describe("the context header inside the plaintext", () => {
  const context = { purpose: "master-secret", clusterId: "prod-eu-1" };
  const secret = Buffer.alloc(32, 7);

  it("gives back the secret for the same purpose and cluster", () => {
    expect(openContext(context, sealContext(context, secret))).toEqual(secret);
  });

  it("refuses another cluster's blob, another purpose, a truncated header and foreign plaintext", () => {
    const sealed = sealContext(context, secret);
    expect(() => openContext({ ...context, clusterId: "prod-us-1" }, sealed)).toThrow(
      /belongs to cluster "prod-eu-1", not to this cluster "prod-us-1": refusing it/,
    );
    expect(() => openContext({ ...context, purpose: "volume-key" }, sealed)).toThrow(/is a "master-secret", not a "volume-key"/);
    expect(() => openContext(context, sealed.subarray(0, 16))).toThrow(/truncated/);
    expect(() => openContext(context, secret)).toThrow(KekDeniedError);
    expect(() => openContext(context, secret)).toThrow(/no cloak header/);
  });

  it("accepts only sensible cluster ids", () => {
    expect(checkClusterId("prod-eu-1")).toBeUndefined();
    expect(checkClusterId("c8a1f0e2-4d0b-4b8e-9d6f-2a7c1e5b9f30")).toBeUndefined();
    for (const bad of ["", "-x", "has space", "a/b", "x".repeat(129)]) expect(checkClusterId(bad)).toMatch(/must be 1-128/);
  });
});
