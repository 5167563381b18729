import { readFile, stat } from "node:fs/promises";
import { dirname, isAbsolute, join } from "node:path";

/**
 * Where the API server is and how to authenticate to it: the in-cluster service account, or
 * one kubeconfig file. What cloak's components need, no more: a bearer token (inline or from a
 * file that is re-read as it rotates) or a client certificate, and the cluster's CA. Exec
 * plugins and auth providers are refused with a clear error rather than half-supported.
 */
export interface KubeConnection {
  /** https://host:port (or http:// for a test server without TLS). */
  readonly server: URL;
  readonly ca: Buffer | undefined;
  readonly cert: Buffer | undefined;
  readonly key: Buffer | undefined;
  readonly insecureSkipTLSVerify: boolean;
  readonly tlsServerName: string | undefined;
  /** The bearer token to send now; undefined with a client certificate only. */
  readonly token: () => Promise<string | undefined>;
  /** For log lines: "in-cluster", or "kubeconfig PATH". */
  readonly source: string;
}

export const SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";

/**
 * A projected service-account token is replaced by the kubelet well before it expires (an hour
 * by default); client-go re-reads the file at most this often, and so does this.
 */
const TOKEN_REREAD_MS = 60_000;

export class KubeConfigError extends Error {}

/** The pod's service account, as client-go's rest.InClusterConfig finds it. */
export async function inClusterConnection(env: NodeJS.ProcessEnv = process.env, dir = SERVICE_ACCOUNT_DIR): Promise<KubeConnection> {
  const host = env["KUBERNETES_SERVICE_HOST"];
  const port = env["KUBERNETES_SERVICE_PORT"];
  if (!host || !port) {
    throw new KubeConfigError("not in a cluster (KUBERNETES_SERVICE_HOST/PORT unset): pass --kubeconfig");
  }
  const tokenFile = join(dir, "token");
  const token = fileToken(tokenFile);
  await token(); // fails now, with the path, rather than at the first request
  return {
    server: new URL(`https://${host.includes(":") ? `[${host}]` : host}:${port}`),
    ca: await readFile(join(dir, "ca.crt")),
    cert: undefined,
    key: undefined,
    insecureSkipTLSVerify: false,
    tlsServerName: undefined,
    token,
    source: "in-cluster",
  };
}

/** One kubeconfig file, its current context (or `context`). */
export async function kubeconfigConnection(path: string, context?: string): Promise<KubeConnection> {
  const { parse } = await import("yaml"); // loaded only by those who use a kubeconfig
  let doc: unknown;
  try {
    doc = parse(await readFile(path, "utf8"));
  } catch (err) {
    throw new KubeConfigError(`kubeconfig ${path}: ${(err as Error).message}`, { cause: err });
  }
  return connectionFromKubeconfig(doc, { path, context });
}

type Named<T> = { name?: unknown } & { [k: string]: T | unknown };

/** The kubeconfig's content (already parsed) to a connection; paths are relative to the file. */
export async function connectionFromKubeconfig(doc: unknown, o: { path: string; context?: string | undefined }): Promise<KubeConnection> {
  const fail = (what: string) => new KubeConfigError(`kubeconfig ${o.path}: ${what}`);
  if (!isRecord(doc)) throw fail("not a mapping");
  const contextName = o.context ?? str(doc["current-context"]);
  if (!contextName) throw fail("no current-context");
  const context = entry(doc["contexts"], contextName, "context", fail);
  const clusterName = str(context["cluster"]);
  const userName = str(context["user"]);
  if (!clusterName) throw fail(`context ${contextName} names no cluster`);
  const cluster = entry(doc["clusters"], clusterName, "cluster", fail);
  const user = userName ? entry(doc["users"], userName, "user", fail) : {};
  const server = str(cluster["server"]);
  if (!server) throw fail(`cluster ${clusterName} has no server`);
  let url: URL;
  try {
    url = new URL(server);
  } catch {
    throw fail(`cluster ${clusterName}: server ${JSON.stringify(server)} is not a URL`);
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") throw fail(`cluster ${clusterName}: server must be https:// (or http://)`);
  for (const unsupported of ["exec", "auth-provider"]) {
    if (user[unsupported] !== undefined) throw fail(`user ${userName}: ${unsupported} credentials are not supported; use a token, a token file or a client certificate`);
  }
  const base = dirname(o.path);
  const material = async (dataKey: string, fileKey: string, from: Record<string, unknown>): Promise<Buffer | undefined> => {
    const data = str(from[dataKey]);
    if (data) return Buffer.from(data, "base64");
    const file = str(from[fileKey]);
    return file ? readFile(isAbsolute(file) ? file : join(base, file)) : undefined;
  };
  const cert = await material("client-certificate-data", "client-certificate", user);
  const key = await material("client-key-data", "client-key", user);
  if ((cert === undefined) !== (key === undefined)) throw fail(`user ${userName}: a client certificate needs its key (and the key its certificate)`);
  const inline = str(user["token"]);
  const tokenFile = str(user["tokenFile"]);
  const token = inline ? async () => inline : tokenFile ? fileToken(isAbsolute(tokenFile) ? tokenFile : join(base, tokenFile)) : async () => undefined;
  if (!inline && !tokenFile && !cert && url.protocol === "https:" && (user["username"] !== undefined || user["password"] !== undefined)) {
    throw fail(`user ${userName}: basic authentication is not supported; use a token or a client certificate`);
  }
  return {
    server: url,
    ca: await material("certificate-authority-data", "certificate-authority", cluster),
    cert,
    key,
    insecureSkipTLSVerify: cluster["insecure-skip-tls-verify"] === true,
    tlsServerName: str(cluster["tls-server-name"]),
    token,
    source: `kubeconfig ${o.path}`,
  };
}

/** A token read from a file, re-read once a minute (the kubelet rotates projected tokens). */
function fileToken(path: string): () => Promise<string> {
  let cached: { value: string; read: number; mtimeMs: number } | undefined;
  return async () => {
    const now = Date.now();
    if (cached && now - cached.read < TOKEN_REREAD_MS) return cached.value;
    const mtimeMs = (await stat(path)).mtimeMs;
    if (cached && cached.mtimeMs === mtimeMs) {
      cached = { ...cached, read: now };
      return cached.value;
    }
    const value = (await readFile(path, "utf8")).trim();
    if (!value) throw new KubeConfigError(`token file ${path} is empty`);
    cached = { value, read: now, mtimeMs };
    return value;
  };
}

function entry(list: unknown, name: string, kind: string, fail: (what: string) => Error): Record<string, unknown> {
  const found = Array.isArray(list) ? (list as Array<Named<unknown>>).find((e) => isRecord(e) && e.name === name) : undefined;
  const body = found?.[kind];
  if (!isRecord(body)) throw fail(`no ${kind} named ${JSON.stringify(name)}`);
  return body;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function str(v: unknown): string | undefined {
  return typeof v === "string" && v !== "" ? v : undefined;
}
