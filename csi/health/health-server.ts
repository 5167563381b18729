import { createServer, type Server } from "node:http";
import type { Registry } from "prom-client";
import { formatEndpoint, type Endpoint } from "../../lib/grpc-server.js";
import { listenHttp } from "../../lib/http-listen.js";
import type { Logger } from "../../lib/log.js";

/** One named condition; rejects (with the reason as its message) when it does not hold. */
export interface HealthCheck {
  readonly name: string;
  check(signal: AbortSignal): Promise<void>;
}

export interface HealthServerOptions {
  readonly endpoint: Extract<Endpoint, { kind: "tcp" }>;
  /** /healthz: the process serves. Only what a restart can cure belongs here. */
  readonly liveness: readonly HealthCheck[];
  /** /readyz: the process can do its job now (dependencies included). */
  readonly readiness: readonly HealthCheck[];
  readonly registry: Registry;
  readonly log: Logger;
  /** Each check's deadline; 4 s by default (kubelet's probe timeout in the manifests is 5 s). */
  readonly timeoutMs?: number;
}

export interface RunningHealthServer {
  readonly port: number;
  stop(): Promise<void>;
}

/**
 * Plain HTTP for kubelet's probes and Prometheus, in place of the livenessprobe sidecar:
 * /healthz (liveness), /readyz (readiness), /metrics. The health answers list every check in
 * kube-apiserver's format ("[+]name ok", "[-]name failed: reason"), 200 when all pass, 503
 * otherwise, so `curl` on a node shows why a pod is not ready.
 */
export async function startHealthServer(options: HealthServerOptions): Promise<RunningHealthServer> {
  const { registry, log } = options;
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405).end();
      return;
    }
    const checks = path === "/healthz" || path === "/livez" ? options.liveness : path === "/readyz" ? options.readiness : undefined;
    if (checks) {
      void runChecks(checks, options.timeoutMs ?? 4_000).then(({ ok, text }) => {
        if (!ok) log.debug({ path, report: text }, "health check failed");
        res.writeHead(ok ? 200 : 503, { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" }).end(text);
      });
    } else if (path === "/metrics") {
      registry.metrics().then(
        (text) => res.writeHead(200, { "content-type": registry.contentType }).end(text),
        (err: unknown) => {
          log.error({ err: err instanceof Error ? err.message : String(err) }, "metrics collection failed");
          res.writeHead(500).end();
        },
      );
    } else {
      res.writeHead(404).end();
    }
  });
  const listening = await listenHttp(server, options.endpoint);
  log.info({ endpoint: formatEndpoint(listening.endpoint) }, "serving /healthz, /readyz and /metrics over HTTP");
  return { port: listening.endpoint.port, stop: listening.stop };
}

/** Runs every check at once, each under its own deadline. */
export async function runChecks(checks: readonly HealthCheck[], timeoutMs: number): Promise<{ ok: boolean; text: string }> {
  const results = await Promise.all(
    checks.map(async (c) => {
      const signal = AbortSignal.timeout(timeoutMs);
      try {
        // Raced, so that a check that ignores its signal still cannot hold the answer back.
        await Promise.race([c.check(signal), timedOut(signal, timeoutMs)]);
        return { name: c.name, error: undefined };
      } catch (err) {
        return { name: c.name, error: (err instanceof Error ? err.message : String(err)).replace(/\s+/g, " ") };
      }
    }),
  );
  const ok = results.every((r) => r.error === undefined);
  const lines = results.map((r) => (r.error === undefined ? `[+]${r.name} ok` : `[-]${r.name} failed: ${r.error}`));
  return { ok, text: `${lines.join("\n")}\n${ok ? "ok" : "check failed"}\n` };
}

function timedOut(signal: AbortSignal, timeoutMs: number): Promise<never> {
  return new Promise((_, reject) => {
    signal.addEventListener("abort", () => reject(new Error(`no answer within ${timeoutMs} ms`)), { once: true });
  });
}
