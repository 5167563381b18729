import { readFile } from "node:fs/promises";
import { dirname, isAbsolute, join } from "node:path";
import { parse } from "yaml";

/**
 * How to reach one API server: its URL, the CA to verify it with, and this process's
 * credentials (a client certificate, or a bearer token that is re-read from its file as
 * kubelet rotates it). Only what cloak's components use: no exec plugins, no auth providers.
 */
export interface KubeConnection {
  readonly server: URL;
  readonly ca?: Buffer | undefined;
  readonly cert?: Buffer | undefined;
  readonly key?: Buffer | undefined;
  /** The bearer token to send now, if any. */
  token(): Promise<string | undefined>;
  /** For messages: where the connection came from ("in-cluster", "kubeconfig /x"). */
  readonly source: string;
}

export class KubeConfigError extends Error {}

export const IN_CLUSTER_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";

/**
 * A kubeconfig file when one is named (the flag, else $KUBECONFIG), else the pod's in-cluster
 * service account, as client-go decides.
 */
export async function loadKubeConnection(o: { kubeconfig?: string | undefined; env?: NodeJS.ProcessEnv } = {}): Promise<KubeConnection> {
  const env = o.env ?? process.env;
  const file = o.kubeconfig ?? (env["KUBECONFIG"] || undefined);
  if (file) return fromKubeconfig(file.split(":")[0] ?? file);
  const host = env["KUBERNETES_SERVICE_HOST"];
  const port = env["KUBERNETES_SERVICE_PORT"];
  if (!host || !port) {
    throw new KubeConfigError("no kubeconfig given and not in a pod (KUBERNETES_SERVICE_HOST/PORT unset): cannot reach the API server");
  }
  return inCluster(host, port, IN_CLUSTER_DIR);
}

export async function inCluster(host: string, port: string, dir: string): Promise<KubeConnection> {
  const ca = await readFile(join(dir, "ca.crt")).catch((err: NodeJS.ErrnoException) => {
    throw new KubeConfigError(`in-cluster CA ${join(dir, "ca.crt")} cannot be read (${err.code ?? err.message})`);
  });
  const server = new URL(`https://${host.includes(":") ? `[${host}]` : host}:${port}`);
  return { server, ca, token: rotatingTokenFile(join(dir, "token")), source: "in-cluster" };
}

/**
 * A token file that kubelet rewrites before the token expires: read again at most once a
 * minute, as client-go does, so a long-running process never sends an expired token.
 */
export function rotatingTokenFile(path: string, maxAgeMs = 60_000): () => Promise<string> {
  let cached: { token: string; at: number } | undefined;
  return async () => {
    if (cached && Date.now() - cached.at < maxAgeMs) return cached.token;
    const token = (await readFile(path, "utf8")).trim();
    cached = { token, at: Date.now() };
    return token;
  };
}

interface KubeconfigDoc {
  "current-context"?: string;
  contexts?: { name: string; context: { cluster: string; user?: string } }[];
  clusters?: { name: string; cluster: Record<string, unknown> }[];
  users?: { name: string; user: Record<string, unknown> }[];
}

export async function fromKubeconfig(file: string): Promise<KubeConnection> {
  let doc: KubeconfigDoc;
  try {
    doc = parse(await readFile(file, "utf8")) as KubeconfigDoc;
  } catch (err) {
    throw new KubeConfigError(`kubeconfig ${file} cannot be read: ${(err as Error).message}`);
  }
  const fail = (what: string): never => {
    throw new KubeConfigError(`kubeconfig ${file}: ${what}`);
  };
  const contextName = doc["current-context"] ?? fail("no current-context");
  const context = doc.contexts?.find((c) => c.name === contextName)?.context ?? fail(`no context ${contextName}`);
  const cluster = doc.clusters?.find((c) => c.name === context.cluster)?.cluster ?? fail(`no cluster ${context.cluster}`);
  const user = (context.user ? doc.users?.find((u) => u.name === context.user)?.user : undefined) ?? {};
  const base = dirname(file);
  const material = async (dataKey: string, fileKey: string, from: Record<string, unknown>): Promise<Buffer | undefined> => {
    const data = from[dataKey];
    if (typeof data === "string") return Buffer.from(data, "base64");
    const path = from[fileKey];
    if (typeof path === "string") return readFile(isAbsolute(path) ? path : join(base, path));
    return undefined;
  };
  for (const unsupported of ["exec", "auth-provider", "username"]) {
    if (user[unsupported] !== undefined) fail(`user credentials of type "${unsupported}" are not supported; use a client certificate or a token`);
  }
  const server = typeof cluster["server"] === "string" ? new URL(cluster["server"]) : fail("the cluster has no server");
  const token = typeof user["token"] === "string" ? user["token"] : undefined;
  const tokenFile = typeof user["tokenFile"] === "string" ? user["tokenFile"] : undefined;
  return {
    server,
    ca: await material("certificate-authority-data", "certificate-authority", cluster),
    cert: await material("client-certificate-data", "client-certificate", user),
    key: await material("client-key-data", "client-key", user),
    token: token !== undefined ? () => Promise.resolve(token) : tokenFile ? rotatingTokenFile(isAbsolute(tokenFile) ? tokenFile : join(base, tokenFile)) : () => Promise.resolve(undefined),
    source: `kubeconfig ${file}`,
  };
}
