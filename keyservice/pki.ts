import "reflect-metadata";
import { randomBytes, webcrypto } from "node:crypto";
import * as x509 from "@peculiar/x509";

type CryptoKeyPair = webcrypto.CryptoKeyPair;
type CryptoKey = webcrypto.CryptoKey;

// Node's WebCrypto is the standard API; its TypeScript type is Node's own declaration of it.
x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

/**
 * Certificates for the key service and its clients, made with @peculiar/x509 over Node's
 * WebCrypto: ECDSA P-256 with SHA-256, which every TLS stack accepts and which keeps handshakes
 * cheap. The CA may only sign end-entity certificates (path length 0); server certificates are
 * for serverAuth only, client certificates for clientAuth only, so a stolen client key cannot
 * impersonate the service.
 */
const ALGORITHM = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;

export interface Validity {
  readonly notBefore: Date;
  readonly notAfter: Date;
}

/** A certificate and its private key, PEM-encoded. */
export interface IssuedPem {
  readonly certPem: string;
  readonly keyPem: string;
}

export interface CertificateAuthority extends IssuedPem {
  readonly cert: x509.X509Certificate;
  readonly keys: CryptoKeyPair;
}

/** Names a client certificate carries: a URI (SPIFFE ID) or a DNS name. */
export type ClientName = { kind: "uri"; value: string } | { kind: "dns"; value: string };

export function validityDays(days: number, now = new Date()): Validity {
  // A minute of slack for clocks that run a little behind the issuer's.
  return { notBefore: new Date(now.getTime() - 60_000), notAfter: new Date(now.getTime() + days * 86_400_000) };
}

export async function createCertificateAuthority(options: { commonName: string; validity: Validity }): Promise<CertificateAuthority> {
  const keys = await generateKeys();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: [{ CN: [options.commonName] }],
    ...options.validity,
    keys,
    signingAlgorithm: ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { cert, keys, certPem: cert.toString("pem"), keyPem: await privateKeyPem(keys.privateKey) };
}

/** Loads a CA that `createCertificateAuthority` wrote, to issue more certificates with it. */
export async function loadCertificateAuthority(certPem: string, keyPem: string): Promise<CertificateAuthority> {
  const cert = new x509.X509Certificate(certPem);
  const der = x509.PemConverter.decodeFirst(keyPem);
  const privateKey = await webcrypto.subtle.importKey("pkcs8", der, ALGORITHM, true, ["sign"]);
  const publicKey = await cert.publicKey.export(ALGORITHM, ["verify"]);
  return { cert, keys: { privateKey, publicKey }, certPem, keyPem };
}

export interface ServerCertificateOptions {
  readonly ca: CertificateAuthority;
  readonly dnsNames: readonly string[];
  readonly ipAddresses?: readonly string[];
  readonly validity: Validity;
}

export function issueServerCertificate(options: ServerCertificateOptions): Promise<IssuedPem> {
  const names: x509.JsonGeneralName[] = [
    ...options.dnsNames.map((value) => ({ type: "dns" as const, value })),
    ...(options.ipAddresses ?? []).map((value) => ({ type: "ip" as const, value })),
  ];
  if (names.length === 0) throw new Error("a server certificate needs at least one DNS name or IP address");
  return issue(options.ca, options.dnsNames[0] ?? options.ipAddresses?.[0] ?? "server", names, x509.ExtendedKeyUsage.serverAuth, options.validity);
}

export interface ClientCertificateOptions {
  readonly ca: CertificateAuthority;
  readonly name: ClientName;
  readonly validity: Validity;
}

export function issueClientCertificate(options: ClientCertificateOptions): Promise<IssuedPem> {
  const { name } = options;
  const general = { type: name.kind === "uri" ? ("url" as const) : ("dns" as const), value: name.value };
  return issue(options.ca, name.value.slice(0, 64), [general], x509.ExtendedKeyUsage.clientAuth, options.validity);
}

/** "spiffe://…" and other URIs are URI names; anything else must be a DNS name. */
export function parseClientName(text: string): ClientName {
  if (/^[a-z][a-z0-9+.-]*:\/\/\S+$/i.test(text)) return { kind: "uri", value: text };
  if (/^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/i.test(text)) {
    return { kind: "dns", value: text.toLowerCase() };
  }
  throw new Error(`client identity ${JSON.stringify(text)} is neither a URI (scheme://…) nor a DNS name`);
}

async function issue(
  ca: CertificateAuthority,
  commonName: string,
  names: x509.JsonGeneralName[],
  usage: x509.ExtendedKeyUsage,
  validity: Validity,
): Promise<IssuedPem> {
  const keys = await generateKeys();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: [{ CN: [commonName] }],
    issuer: ca.cert.subjectName,
    ...validity,
    publicKey: keys.publicKey,
    signingKey: ca.keys.privateKey,
    signingAlgorithm: ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([usage], false),
      // Critical when the subject is a bare CN placeholder, as RFC 5280 asks.
      new x509.SubjectAlternativeNameExtension(names, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(ca.keys.publicKey),
    ],
  });
  return { certPem: cert.toString("pem"), keyPem: await privateKeyPem(keys.privateKey) };
}

function generateKeys(): Promise<CryptoKeyPair> {
  return webcrypto.subtle.generateKey(ALGORITHM, true, ["sign", "verify"]) as Promise<CryptoKeyPair>;
}

async function privateKeyPem(key: CryptoKey): Promise<string> {
  return x509.PemConverter.encode(await webcrypto.subtle.exportKey("pkcs8", key), "PRIVATE KEY");
}

/** 16 random bytes, positive (high bit clear), as RFC 5280 asks of serial numbers. */
function serial(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0] ?? 0) & 0x7f;
  return bytes.toString("hex");
}
