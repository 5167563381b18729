import { createServer, type Server } from "node:http";
import type { Logger } from "../lib/log.js";
import type { AgentStatus } from "./agent.js";
import type { NetdMetrics } from "./metrics.js";

export interface StatusSource {
  readonly healthy: boolean;
  status(): AgentStatus;
  /** Re-reads the per-peer counters, so that a scrape never shows stale handshakes. */
  refreshStats(): Promise<void>;
}

export interface StatusServerOptions {
  /** "host:port"; port 0 picks a free one (tests). */
  readonly address: string;
  readonly agent: StatusSource;
  readonly metrics: NetdMetrics;
  readonly logger: Logger;
}

export interface StatusServer {
  readonly port: number;
  close(): Promise<void>;
}

/**
 * /healthz (200 once a reconcile has succeeded and the last one did; 503 otherwise),
 * /metrics (Prometheus text) and /status (the peer table as JSON, for `cloak netd status`).
 */
export async function startStatusServer(o: StatusServerOptions): Promise<StatusServer> {
  const colon = o.address.lastIndexOf(":");
  const host = o.address.slice(0, colon).replace(/^\[|\]$/g, "") || "0.0.0.0";
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
    if (path === "/status" || path === "/metrics") {
      const body = async () => {
        await o.agent.refreshStats();
        return path === "/status" ? `${JSON.stringify(o.agent.status())}\n` : o.metrics.registry.metrics();
      };
      body().then(
        (text) => reply(200, path === "/status" ? "application/json" : o.metrics.registry.contentType, text),
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
    port: bound,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
