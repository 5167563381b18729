import { existsSync } from "node:fs";
import { join } from "node:path";
import type { Runner } from "../../lib/exec.js";

/**
 * A throwaway CA and the certificates a test cluster needs, made with the openssl CLI
 * (EC P-256: quick to generate). Files are reused when they already exist, so restarting an
 * API server on the same directory keeps its identity.
 */

export interface Pem {
  readonly cert: string;
  readonly key: string;
}

const DAYS = "30";

export async function ensureCa(runner: Runner, dir: string): Promise<Pem> {
  const pem = { cert: join(dir, "ca.crt"), key: join(dir, "ca.key") };
  if (existsSync(pem.cert) && existsSync(pem.key)) return pem;
  await runner({
    file: "openssl",
    args: ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", pem.key, "-out", pem.cert,
      "-days", DAYS, "-subj", "/CN=cloak-test-ca", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
  });
  return pem;
}

export interface LeafOptions {
  readonly name: string;
  readonly commonName: string;
  /** Subject O= entries: Kubernetes groups for client certificates. */
  readonly organizations?: readonly string[];
  readonly dnsNames?: readonly string[];
  readonly ips?: readonly string[];
  readonly usage: "server" | "client" | "both";
}

/** A certificate signed by `ca`, written as <name>.crt and <name>.key in `dir`. */
export async function ensureLeaf(runner: Runner, dir: string, ca: Pem, o: LeafOptions): Promise<Pem> {
  const pem = { cert: join(dir, `${o.name}.crt`), key: join(dir, `${o.name}.key`) };
  if (existsSync(pem.cert) && existsSync(pem.key)) return pem;
  const subject = `${(o.organizations ?? []).map((org) => `/O=${org}`).join("")}/CN=${o.commonName}`;
  const san = [...(o.dnsNames ?? []).map((d) => `DNS:${d}`), ...(o.ips ?? []).map((i) => `IP:${i}`)];
  const eku = o.usage === "server" ? "serverAuth" : o.usage === "client" ? "clientAuth" : "serverAuth,clientAuth";
  await runner({
    file: "openssl",
    args: ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", pem.key, "-out", pem.cert,
      "-days", DAYS, "-subj", subject, "-CA", ca.cert, "-CAkey", ca.key,
      "-addext", "basicConstraints=critical,CA:FALSE", "-addext", "keyUsage=critical,digitalSignature,keyEncipherment",
      "-addext", `extendedKeyUsage=${eku}`, ...(san.length > 0 ? ["-addext", `subjectAltName=${san.join(",")}`] : [])],
  });
  return pem;
}

/** The service-account signing key pair (sa.key, sa.pub). */
export async function ensureServiceAccountKey(runner: Runner, dir: string): Promise<{ key: string; pub: string }> {
  const out = { key: join(dir, "sa.key"), pub: join(dir, "sa.pub") };
  if (existsSync(out.key) && existsSync(out.pub)) return out;
  await runner({ file: "openssl", args: ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", out.key] });
  await runner({ file: "openssl", args: ["pkey", "-in", out.key, "-pubout", "-out", out.pub] });
  return out;
}
