import { lstat, mkdir, unlink } from "node:fs/promises";
import { connect } from "node:net";
import { dirname } from "node:path";
import {
  Server,
  ServerCredentials,
  type ServiceDefinition,
  type UntypedServiceImplementation,
} from "@grpc/grpc-js";
import type { Logger } from "./log.js";
import { FailedPreconditionError, InvalidArgumentError } from "./errors.js";

export type Endpoint = { kind: "unix"; path: string } | { kind: "tcp"; host: string; port: number };

/**
 * Accepts what CSI sidecars and admins write: `unix:///csi/csi.sock`, `unix:/csi/csi.sock`, a
 * bare absolute path, or `host:port` / `tcp://host:port` / `[::1]:port`.
 */
export function parseEndpoint(text: string): Endpoint {
  if (text.startsWith("unix://")) return unixEndpoint(text.slice("unix://".length), text);
  if (text.startsWith("unix:")) return unixEndpoint(text.slice("unix:".length), text);
  if (text.startsWith("/")) return unixEndpoint(text, text);
  const hostPort = text.startsWith("tcp://") ? text.slice("tcp://".length) : text;
  const match = /^(\[[0-9a-fA-F:.]+\]|[^:[\]]+):(\d{1,5})$/.exec(hostPort);
  const port = Number(match?.[2]);
  if (!match?.[1] || !Number.isInteger(port) || port > 65535) {
    throw new InvalidArgumentError(`endpoint ${JSON.stringify(text)} is neither unix:///path nor host:port`);
  }
  return { kind: "tcp", host: match[1].replace(/^\[|\]$/g, ""), port };
}

function unixEndpoint(path: string, original: string): Endpoint {
  if (!path.startsWith("/")) throw new InvalidArgumentError(`unix endpoint ${original} must be an absolute path`);
  return { kind: "unix", path };
}

export function formatEndpoint(endpoint: Endpoint): string {
  if (endpoint.kind === "unix") return `unix://${endpoint.path}`;
  return endpoint.host.includes(":") ? `[${endpoint.host}]:${endpoint.port}` : `${endpoint.host}:${endpoint.port}`;
}

export interface ServiceBinding {
  readonly definition: ServiceDefinition;
  readonly implementation: UntypedServiceImplementation;
}

export interface GrpcServerOptions {
  readonly endpoint: Endpoint;
  readonly services: readonly ServiceBinding[];
  readonly logger: Logger;
  /** Insecure when unset: right for a unix socket, which file permissions protect. */
  readonly credentials?: ServerCredentials;
  /** How long in-flight calls may run after a stop is requested; 10 s by default. */
  readonly drainMs?: number;
}

export interface RunningServer {
  /** What was bound; for tcp port 0 this carries the port the kernel chose. */
  readonly endpoint: Endpoint;
  /** Stops accepting, lets in-flight calls finish for drainMs, then cuts the rest. Idempotent. */
  stop(): Promise<void>;
}

/** Binds, starts and returns a server; a stale unix socket from a dead process is removed first. */
export async function startGrpcServer(options: GrpcServerOptions): Promise<RunningServer> {
  const { logger, endpoint } = options;
  const server = new Server({
    "grpc.max_receive_message_length": 4 * 1024 * 1024,
    "grpc.keepalive_permit_without_calls": 1,
    // No channelz service is served, and its per-call trace bookkeeping showed in the key
    // service's profile (bench/keyservice).
    "grpc.enable_channelz": 0,
  });
  for (const service of options.services) server.addService(service.definition, service.implementation);

  if (endpoint.kind === "unix") await prepareSocketPath(endpoint.path, logger);
  const credentials = options.credentials ?? ServerCredentials.createInsecure();
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(formatEndpoint(endpoint), credentials, (err, boundPort) => (err ? reject(err) : resolve(boundPort)));
  });
  const bound: Endpoint = endpoint.kind === "tcp" ? { ...endpoint, port } : endpoint;
  logger.info({ endpoint: formatEndpoint(bound) }, "serving");

  let stopping: Promise<void> | undefined;
  const drainMs = options.drainMs ?? 10_000;
  return {
    endpoint: bound,
    stop: () => {
      stopping ??= drain(server, drainMs, logger).then(async () => {
        if (endpoint.kind === "unix") await unlink(endpoint.path).catch(() => undefined);
        logger.info({ endpoint: formatEndpoint(bound) }, "stopped");
      });
      return stopping;
    },
  };
}

async function drain(server: Server, drainMs: number, logger: Logger): Promise<void> {
  await new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      logger.warn({ drainMs }, "in-flight calls did not finish in time; cutting them");
      server.forceShutdown();
      resolve();
    }, drainMs);
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/**
 * A socket file left by a killed plugin blocks bind(). It is removed only when nothing
 * answers on it, so two plugins configured with the same path fail loudly instead of
 * stealing each other's socket.
 */
async function prepareSocketPath(path: string, logger: Logger): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const stat = await lstat(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT") return undefined;
    throw err;
  });
  if (!stat) return;
  if (!stat.isSocket()) {
    throw new FailedPreconditionError(`${path} exists and is not a socket; refusing to replace it`);
  }
  if (await somethingListens(path)) {
    throw new FailedPreconditionError(`another process is serving on ${path}`);
  }
  await unlink(path);
  logger.info({ path }, "removed stale socket");
}

function somethingListens(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(path);
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

export interface Stoppable {
  stop(): Promise<void>;
}

/**
 * SIGTERM (kubelet, the container runtime) and SIGINT (a person at a terminal) both drain and
 * stop everything given, then exit. A second signal exits at once.
 */
export function stopOnSignals(stoppables: readonly Stoppable[], logger: Logger): void {
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) {
      logger.warn({ signal }, "second signal; exiting now");
      process.exit(1);
    }
    stopping = true;
    logger.info({ signal }, "stopping");
    Promise.all(stoppables.map((s) => s.stop())).then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, "error while stopping");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
}
