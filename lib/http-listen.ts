import type { Server } from "node:http";
import type { Endpoint } from "./grpc-server.js";

export interface ListeningHttp {
  /** What was bound; for port 0 the port the kernel chose. */
  readonly endpoint: Extract<Endpoint, { kind: "tcp" }>;
  /** Stops accepting and cuts open connections (kubelet's and Prometheus' keep-alives). */
  stop(): Promise<void>;
}

/**
 * Binds an HTTP server (health, metrics) to `endpoint`; a bind error (the port is taken) rejects
 * instead of surfacing later as an unhandled 'error' event.
 */
export async function listenHttp(server: Server, endpoint: Extract<Endpoint, { kind: "tcp" }>): Promise<ListeningHttp> {
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(endpoint.port, endpoint.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : endpoint.port;
  return {
    endpoint: { ...endpoint, port },
    stop: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

