import * as http from "node:http";
import * as https from "node:https";
import { inClusterConnection, kubeconfigConnection, type KubeConnection } from "./config.js";
import { LineSplitter, ListBodySplitter } from "./list-body.js";

/**
 * A small Kubernetes API client: JSON requests, lists streamed item by item, watches as a
 * stream of events, over one keep-alive connection pool. It exists because the generated
 * client (`@kubernetes/client-node`) loads every model and auth provider with its config
 * module, which cost netd ~75 MB of its 100 MB budget before the first Node was read
 * (BENCHMARKS.md, netd). The one client of cloak's components: netd's Nodes, the key service's
 * authorisation caches and TokenReviews, the CSI controller's CloakKey records. What a component
 * needs on top (paging, watch, relist) is in reflector.ts; the types it reads are its own (only
 * the fields it uses).
 */

/** A request the API server refused (or answered with a watch ERROR event): its HTTP code and reason. */
export class KubeApiError extends Error {
  constructor(
    message: string,
    /** HTTP status: 404, 409, 410 Gone, 403, 500... */
    readonly code: number,
    /** The Status object's reason ("NotFound", "Expired", ...), when it sent one. */
    readonly reason: string | undefined,
  ) {
    super(message);
    this.name = "KubeApiError";
  }
}

/** Whether `err` is the API server's answer with this HTTP status (404, 409, 410...). */
export function isKubeStatus(err: unknown, code: number): boolean {
  return err instanceof KubeApiError && err.code === code;
}

export type Query = Readonly<Record<string, string | number | boolean | undefined>>;

export interface RequestOptions {
  readonly query?: Query;
  /** Sent as JSON. */
  readonly body?: unknown;
  readonly contentType?: string;
  /** Idle time on the connection before the request fails; default 60 s. */
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
}

export interface WatchEvent {
  readonly type: "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" | "ERROR" | string;
  readonly object: unknown;
}

/** The metadata of a list response: where to watch from, and the next page. */
export interface ListMeta {
  readonly resourceVersion: string;
  readonly continue: string | undefined;
  readonly items: number;
}

const DEFAULT_TIMEOUT_MS = 60_000;
/** The most of an error body kept for the message. */
const ERROR_BODY_LIMIT = 64 * 1024;

export class KubeClient {
  private readonly agent: http.Agent;

  constructor(
    private readonly connection: KubeConnection,
    private readonly userAgent = "cloak",
  ) {
    const c = connection;
    // One pool: the long watch holds one connection, lists and patches share the others.
    this.agent =
      c.server.protocol === "https:"
        ? new https.Agent({
            keepAlive: true,
            ...(c.ca ? { ca: c.ca } : {}),
            ...(c.cert ? { cert: c.cert } : {}),
            ...(c.key ? { key: c.key } : {}),
            ...(c.tlsServerName ? { servername: c.tlsServerName } : {}),
            rejectUnauthorized: !c.insecureSkipTLSVerify,
          })
        : new http.Agent({ keepAlive: true });
  }

  /** From a kubeconfig file when given one (else the first of $KUBECONFIG), else the pod's service account. */
  static async connect(kubeconfig: string | undefined, userAgent?: string, env: NodeJS.ProcessEnv = process.env): Promise<KubeClient> {
    const file = kubeconfig ?? (env["KUBECONFIG"]?.split(":")[0] || undefined);
    return new KubeClient(file ? await kubeconfigConnection(file) : await inClusterConnection(env), userAgent);
  }

  get server(): string {
    return this.connection.server.href;
  }

  /** Where the connection came from: "in-cluster" or "kubeconfig PATH". */
  get source(): string {
    return this.connection.source;
  }

  /** One request with a JSON answer. */
  async json<T>(method: string, path: string, o: RequestOptions = {}): Promise<T> {
    const res = await this.open(method, path, o);
    const chunks: Buffer[] = [];
    for await (const chunk of res) chunks.push(chunk as Buffer);
    const text = Buffer.concat(chunks).toString("utf8");
    return (text ? JSON.parse(text) : undefined) as T;
  }

  /** A JSON merge patch (RFC 7386): `null` deletes a field. */
  mergePatch<T>(path: string, body: unknown, o: Omit<RequestOptions, "body" | "contentType"> = {}): Promise<T> {
    return this.json<T>("PATCH", path, { ...o, body, contentType: "application/merge-patch+json" });
  }

  /**
   * One list request (one page when `query.limit` is set), its items handed to `onItem` one at
   * a time as they arrive; resolves with the list's metadata once the body is complete.
   */
  async list(path: string, query: Query, onItem: (item: unknown) => void, o: Omit<RequestOptions, "query"> = {}): Promise<ListMeta> {
    const res = await this.open("GET", path, { ...o, query });
    const splitter = new ListBodySplitter(onItem);
    for await (const chunk of res) splitter.push(chunk as Buffer);
    const { body, items } = splitter.end();
    const meta = (body["metadata"] ?? {}) as { resourceVersion?: unknown; continue?: unknown };
    return {
      resourceVersion: typeof meta.resourceVersion === "string" ? meta.resourceVersion : "",
      continue: typeof meta.continue === "string" && meta.continue !== "" ? meta.continue : undefined,
      items,
    };
  }

  /**
   * A watch: events as the server streams them, until it ends the request (its timeoutSeconds)
   * or `signal` aborts it. A watch ERROR event is not thrown here; the caller decides.
   */
  async watch(path: string, query: Query, onEvent: (event: WatchEvent) => void, o: Omit<RequestOptions, "query"> = {}): Promise<void> {
    const res = await this.open("GET", path, { ...o, query: { ...query, watch: true } });
    const lines = new LineSplitter((value) => {
      const e = value as { type?: unknown; object?: unknown };
      if (typeof e.type !== "string") throw new Error("watch: an event without a type");
      onEvent({ type: e.type, object: e.object });
    });
    for await (const chunk of res) lines.push(chunk as Buffer);
    lines.end();
  }

  /** Ends the pool's idle connections (a watch in progress is ended by its signal). */
  close(): void {
    this.agent.destroy();
  }

  private async open(method: string, path: string, o: RequestOptions): Promise<http.IncomingMessage> {
    const url = new URL(path, this.connection.server);
    for (const [k, v] of Object.entries(o.query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v));
    const token = await this.connection.token();
    const body = o.body === undefined ? undefined : Buffer.from(JSON.stringify(o.body));
    const headers: http.OutgoingHttpHeaders = { accept: "application/json", "user-agent": this.userAgent };
    if (token) headers["authorization"] = `Bearer ${token}`;
    if (body) {
      headers["content-type"] = o.contentType ?? "application/json";
      headers["content-length"] = body.length;
    }
    const request = url.protocol === "https:" ? https.request : http.request;
    const timeoutMs = o.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    return new Promise<http.IncomingMessage>((resolve, reject) => {
      const req = request(url, { method, headers, agent: this.agent, timeout: timeoutMs, ...(o.signal ? { signal: o.signal } : {}) }, (res) => {
        const code = res.statusCode ?? 0;
        if (code >= 200 && code < 300) return resolve(res);
        readError(res, method, url).then(reject, reject);
      });
      req.on("timeout", () => req.destroy(Object.assign(new Error(`${method} ${url.pathname}: no answer for ${timeoutMs / 1000} s`), { name: "TimeoutError" })));
      req.on("error", reject);
      req.end(body);
    });
  }
}

async function readError(res: http.IncomingMessage, method: string, url: URL): Promise<KubeApiError> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res) {
    if (size < ERROR_BODY_LIMIT) chunks.push(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  const text = Buffer.concat(chunks).toString("utf8").slice(0, ERROR_BODY_LIMIT);
  const code = res.statusCode ?? 0;
  let status: { message?: unknown; reason?: unknown } = {};
  try {
    status = JSON.parse(text) as typeof status;
  } catch {
    // Not a Status object (a proxy in between, say): the text is the message.
  }
  const message = typeof status.message === "string" ? status.message : text.trim() || (res.statusMessage ?? "");
  return new KubeApiError(`${method} ${url.pathname}: ${code} ${message}`, code, typeof status.reason === "string" ? status.reason : undefined);
}

/** A watch ERROR event's Status object as an error (410 Gone when the resourceVersion is too old). */
export function watchError(object: unknown): KubeApiError {
  const s = (object ?? {}) as { code?: unknown; message?: unknown; reason?: unknown };
  const code = typeof s.code === "number" ? s.code : 0;
  return new KubeApiError(`watch error ${code}: ${typeof s.message === "string" ? s.message : "no message"}`, code, typeof s.reason === "string" ? s.reason : undefined);
}
