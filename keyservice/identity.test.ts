import { X509Certificate } from "node:crypto";
import { describe, expect, it } from "vitest";
import { identityNames, parseSubjectAltName } from "./identity.js";
import { createCertificateAuthority, issueClientCertificate, validityDays } from "./pki.js";

describe("parseSubjectAltName", () => {
  it("reads URI and DNS names and ignores the other kinds", () => {
    expect(parseSubjectAltName("URI:spiffe://cloak/ns/a/sa/b, DNS:Node-1.Example, IP Address:10.0.0.1, email:a@b")).toEqual({
      uris: ["spiffe://cloak/ns/a/sa/b"],
      dnsNames: ["node-1.example"],
    });
  });

  it("decodes the JSON-quoted form Node uses for values with commas, so one name never reads as two", () => {
    expect(parseSubjectAltName('URI:"spiffe://cloak/a, DNS:evil.example", DNS:ok.example')).toEqual({
      uris: ["spiffe://cloak/a, DNS:evil.example"],
      dnsNames: ["ok.example"],
    });
  });

  it("yields no identity for empty or malformed text rather than guessing", () => {
    expect(parseSubjectAltName(undefined)).toEqual({ uris: [], dnsNames: [] });
    expect(parseSubjectAltName("")).toEqual({ uris: [], dnsNames: [] });
    expect(parseSubjectAltName("garbage")).toEqual({ uris: [], dnsNames: [] });
    expect(parseSubjectAltName('URI:"unterminated')).toEqual({ uris: [], dnsNames: [] });
  });

  it("agrees with what Node prints for a real certificate", async () => {
    const ca = await createCertificateAuthority({ commonName: "t", validity: validityDays(1) });
    const issued = await issueClientCertificate({ ca, name: { kind: "uri", value: "spiffe://cloak/ns/x/sa/y" }, validity: validityDays(1) });
    const text = new X509Certificate(issued.certPem).subjectAltName;
    expect(identityNames(parseSubjectAltName(text))).toEqual(["spiffe://cloak/ns/x/sa/y"]);
  });
});
