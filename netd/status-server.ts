import { createServer, type Server } from "node:http";
import type { Logger } from "../lib/log.js";
import type { AgentStatus } from "./agent.js";
import type { NetdMetrics } from "./metrics.js";

export interface StatusSource {
  readonly healthy: boolean;
  /** The last reconcile's state: answering a request runs no command (no `wg` per scrape). */
  status(): AgentStatus;
}

export interface StatusServerOptions {
  /** "host:port"; port 0 picks a free one (tests). */
  readonly address: string;
  readonly agent: StatusSource;
  readonly metrics: NetdMetrics;
  readonly logger: Logger;
}

export interface StatusServer {
  /** host:port as bound (brackets around an IPv6 host). */
  readonly address: string;
  readonly port: number;
  close(): Promise<void>;
}

/**
 * /healthz (200 once a reconcile has succeeded and the last one did; 503 otherwise),
 * /metrics (Prometheus text) and /status (the peer table as JSON, for `cloak netd status`).
 * Both are served from what the agent last read (its reconciles and a periodic re-read of the
 * counters), so a scraper or a loop of `status` calls never makes netd fork a process.
 */
export async function startStatusServer(o: StatusServerOptions): Promise<StatusServer> {
  const colon = o.address.lastIndexOf(":");
  const host = o.address.slice(0, colon).replace(/^\[|\]$/g, "") || "127.0.0.1";
  const port = Number(o.address.slice(colon + 1));
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    const reply = (code: number, type: string, body: string) => {
      res.writeHead(code, { "content-type": type });
      res.end(body);
    };
    if (req.method !== "GET") return reply(405, "text/plain", "method not allowed\n");
    if (path === "/healthz") {
      return o.agent.healthy ? reply(200, "text/plain", "ok\n") : reply(503, "text/plain", `not ready: ${o.agent.status().lastError ?? "no reconcile yet"}\n`);
    }
    if (path === "/status") return reply(200, "application/json", `${JSON.stringify(o.agent.status())}\n`);
    if (path === "/metrics") {
      o.metrics.registry.metrics().then(
        (text) => reply(200, o.metrics.registry.contentType, text),
        (err: unknown) => reply(500, "text/plain", `${(err as Error).message}\n`),
      );
      return;
    }
    reply(404, "text/plain", "not found\n");
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  const address = server.address();
  const bound = typeof address === "object" && address ? address.port : port;
  o.logger.info({ address: `${host}:${bound}` }, "serving /healthz, /metrics and /status");
  return {
    address: `${host.includes(":") ? `[${host}]` : host}:${bound}`,
    port: bound,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
