import { Agent, request as httpsRequest, type RequestOptions } from "node:https";
import type { IncomingMessage } from "node:http";
import type { KubeConnection } from "./connection.js";

/**
 * A small Kubernetes API client: JSON requests, paged lists and watch streams over one
 * keep-alive agent. cloak's key service and controller use a handful of endpoints, and
 * @kubernetes/client-node costs about 60 MB of RSS just to load (every generated model);
 * this costs nothing, and hands callers plain JSON that they project to what they keep.
 */

/** An answer other than 2xx, with the Status object's reason and message when there is one. */
export class KubeApiError extends Error {
  constructor(
    readonly status: number,
    readonly reason: string,
    message: string,
  ) {
    super(message);
    this.name = "KubeApiError";
  }
}

export function isKubeStatus(err: unknown, status: number): boolean {
  return err instanceof KubeApiError && err.status === status;
}

export interface RequestOptionsLite {
  readonly query?: Readonly<Record<string, string | number | boolean | undefined>>;
  readonly body?: unknown;
  readonly contentType?: string;
  readonly signal?: AbortSignal | undefined;
  /** Whole-request timeout; 30 s by default. */
  readonly timeoutMs?: number;
}

export interface WatchEvent {
  readonly type: "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" | "ERROR";
  readonly object: Record<string, unknown>;
}

export interface ListPage {
  readonly items: Record<string, unknown>[];
  readonly resourceVersion: string;
  readonly continueToken: string | undefined;
}

export class KubeApi {
  private readonly agent: Agent;

  constructor(
    readonly connection: KubeConnection,
    private readonly userAgent = "cloak",
  ) {
    this.agent = new Agent({
      keepAlive: true,
      ...(connection.ca ? { ca: connection.ca } : {}),
      ...(connection.cert ? { cert: connection.cert } : {}),
      ...(connection.key ? { key: connection.key } : {}),
    });
  }

  close(): void {
    this.agent.destroy();
  }

  async request<T = Record<string, unknown>>(method: string, path: string, o: RequestOptionsLite = {}): Promise<T> {
    const res = await this.open(method, path, o);
    const text = await readBody(res);
    if ((res.statusCode ?? 0) >= 300) throw toError(res.statusCode ?? 0, text, method, path);
    return (text === "" ? {} : JSON.parse(text)) as T;
  }

  /** One page of a list; `continueToken` is set while more follow. */
  async listPage(path: string, o: { limit: number; continueToken?: string | undefined; query?: RequestOptionsLite["query"]; signal?: AbortSignal | undefined }): Promise<ListPage> {
    const list = await this.request<{ items?: Record<string, unknown>[]; metadata?: { resourceVersion?: string; continue?: string } }>("GET", path, {
      query: { ...o.query, limit: o.limit, ...(o.continueToken ? { continue: o.continueToken } : {}) },
      signal: o.signal,
      timeoutMs: 120_000,
    });
    return { items: list.items ?? [], resourceVersion: list.metadata?.resourceVersion ?? "", continueToken: list.metadata?.continue || undefined };
  }

  /**
   * One watch request: calls `onEvent` for each event as it arrives and resolves when the
   * server ends the stream (its timeout). Rejects with KubeApiError when the request is refused,
   * or with the transport's error.
   */
  async watch(path: string, o: { query?: RequestOptionsLite["query"]; signal?: AbortSignal | undefined }, onEvent: (event: WatchEvent) => void): Promise<void> {
    const res = await this.open("GET", path, { query: { ...o.query, watch: true }, signal: o.signal, timeoutMs: 0 });
    if ((res.statusCode ?? 0) >= 300) throw toError(res.statusCode ?? 0, await readBody(res), "WATCH", path);
    await new Promise<void>((resolve, reject) => {
      let pending = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        pending += chunk;
        let newline: number;
        while ((newline = pending.indexOf("\n")) >= 0) {
          const line = pending.slice(0, newline);
          pending = pending.slice(newline + 1);
          if (line.trim() === "") continue;
          try {
            onEvent(JSON.parse(line) as WatchEvent);
          } catch (err) {
            res.destroy(err as Error);
            return;
          }
        }
      });
      res.once("end", () => resolve());
      res.once("error", reject);
      res.once("aborted", () => reject(new Error("the watch was cut off")));
    });
  }

  private async open(method: string, path: string, o: RequestOptionsLite): Promise<IncomingMessage> {
    const url = new URL(path, this.connection.server);
    for (const [key, value] of Object.entries(o.query ?? {})) if (value !== undefined) url.searchParams.set(key, String(value));
    const token = await this.connection.token();
    const body = o.body === undefined ? undefined : Buffer.from(JSON.stringify(o.body));
    const options: RequestOptions = {
      method,
      hostname: url.hostname.replace(/^\[|\]$/g, ""),
      port: url.port || 443,
      path: `${url.pathname}${url.search}`,
      agent: this.agent,
      headers: {
        accept: "application/json",
        "user-agent": this.userAgent,
        ...(token ? { authorization: `Bearer ${token}` } : {}),
        ...(body ? { "content-type": o.contentType ?? "application/json", "content-length": body.length } : {}),
      },
      ...(o.signal ? { signal: o.signal } : {}),
    };
    return new Promise<IncomingMessage>((resolve, reject) => {
      const req = httpsRequest(options, resolve);
      const timeoutMs = o.timeoutMs ?? 30_000;
      if (timeoutMs > 0) req.setTimeout(timeoutMs, () => req.destroy(new Error(`${method} ${url.pathname}: no answer in ${timeoutMs} ms`)));
      req.once("error", reject);
      req.end(body);
    });
  }
}

function readBody(res: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    res.on("data", (c: Buffer) => chunks.push(c));
    res.once("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    res.once("error", reject);
  });
}

function toError(status: number, text: string, method: string, path: string): KubeApiError {
  let reason = "";
  let message = text.slice(0, 500);
  try {
    const s = JSON.parse(text) as { reason?: string; message?: string };
    reason = s.reason ?? "";
    message = s.message ?? message;
  } catch {
    // not a Status object
  }
  return new KubeApiError(status, reason, `${method} ${path}: ${status} ${reason ? `${reason}: ` : ""}${message}`);
}

/** Path segments are names the API validated, but a caller's input could still hold a slash. */
export function segment(name: string): string {
  return encodeURIComponent(name);
}
