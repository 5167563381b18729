import { createServer, type Server } from "node:http";
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import { registerBuildInfo } from "../lib/build-info.js";
import type { Endpoint } from "../lib/grpc-server.js";
import { formatEndpoint } from "../lib/grpc-server.js";
import type { Logger } from "../lib/log.js";

/** The key service's Prometheus metrics, in a registry of their own (no global state). */
export class KeyServiceMetrics {
  readonly registry = new Registry();
  private readonly requests: Counter<"result">;
  private readonly latency: Histogram;
  private readonly certExpiry: Gauge;

  constructor() {
    this.requests = new Counter({
      name: "cloak_keyservice_requests_total",
      help: "GetDataKey requests by result (the gRPC status code name, e.g. OK, PERMISSION_DENIED).",
      labelNames: ["result"],
      registers: [this.registry],
    });
    this.latency = new Histogram({
      name: "cloak_keyservice_request_duration_seconds",
      help: "Time from receiving a GetDataKey request to handing its answer to gRPC.",
      // A derivation takes microseconds; the buckets resolve that range and still catch stalls.
      buckets: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25],
      registers: [this.registry],
    });
    this.certExpiry = new Gauge({
      name: "cloak_keyservice_certificate_expiry_timestamp_seconds",
      help: "When the serving certificate in force expires (Unix time): alert well before it.",
      registers: [this.registry],
    });
    collectDefaultMetrics({ register: this.registry, prefix: "cloak_keyservice_" });
    registerBuildInfo(this.registry, "keyservice");
  }

  /** The counter's child per result, made once: inc({ result }) would hash the labels on every request. */
  private readonly byResult = new Map<string, { inc(): void }>();

  observe(result: string, seconds: number): void {
    let counter = this.byResult.get(result);
    if (!counter) this.byResult.set(result, (counter = this.requests.labels({ result })));
    counter.inc();
    this.latency.observe(seconds);
  }

  setCertificateExpiry(date: Date): void {
    this.certExpiry.set(Math.floor(date.getTime() / 1000));
  }
}

export interface HttpEndpointOptions {
  readonly endpoint: Extract<Endpoint, { kind: "tcp" }>;
  readonly metrics: KeyServiceMetrics;
  /** Ready: serving keys (for a readiness probe; kubelet's gRPC probes cannot speak mTLS). */
  readonly ready: () => boolean;
  /** Lines appended to /readyz's answer: what an operator should know either way (KMS mode). */
  readonly readyDetail?: () => readonly string[];
  readonly logger: Logger;
}

export interface RunningHttpEndpoint {
  readonly port: number;
  stop(): Promise<void>;
}

/** Plain HTTP: /metrics, /healthz (the process answers), /readyz (it serves keys). */
export async function startHttpEndpoint(options: HttpEndpointOptions): Promise<RunningHttpEndpoint> {
  const { metrics, ready, logger } = options;
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405).end();
    } else if (path === "/metrics") {
      metrics.registry.metrics().then(
        (text) => res.writeHead(200, { "content-type": metrics.registry.contentType }).end(text),
        (err: unknown) => {
          logger.error({ err }, "metrics collection failed");
          res.writeHead(500).end();
        },
      );
    } else if (path === "/healthz") {
      res.writeHead(200, { "content-type": "text/plain" }).end("ok\n");
    } else if (path === "/readyz") {
      const ok = ready();
      const detail = options.readyDetail?.() ?? [];
      res.writeHead(ok ? 200 : 503, { "content-type": "text/plain" }).end([ok ? "ready" : "not ready", ...detail, ""].join("\n"));
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.endpoint.port, options.endpoint.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : options.endpoint.port;
  logger.info({ endpoint: formatEndpoint({ ...options.endpoint, port }) }, "serving metrics and health over HTTP");
  return {
    port,
    stop: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
