import type { KeyObject } from "node:crypto";
import { experimental } from "@grpc/grpc-js";
import { masterKeyObject, readKeyMaterial } from "../lib/data-key.js";
import { startGrpcServer, type Endpoint, type RunningServer } from "../lib/grpc-server.js";
import type { Logger } from "../lib/log.js";
import { loadProto } from "../lib/proto.js";
import { TlsFileWatcher } from "../lib/tls-files.js";
import type { ProtoGrpcType as HealthProto } from "../proto/gen/health.js";
import type { ProtoGrpcType as KeyServiceProto } from "../proto/gen/keyservice.js";
import { openAllowSource } from "./allow-source.js";
import type { Authorizer } from "./authz/authorizer.js";
import type { KeyServiceConfig } from "./config.js";
import { HealthStatus, healthHandlers } from "./health.js";
import { openKmsMasterSecret } from "./kek/open.js";
import { KeyServiceMetrics, startHttpEndpoint, type RunningHttpEndpoint } from "./metrics.js";
import { keyServiceImplementation } from "./service.js";

export const KEY_SERVICE_NAME = "cloak.keyservice.v1.KeyService";

export interface RunningKeyService {
  /** What the gRPC server bound (the port the kernel chose for port 0). */
  readonly endpoint: Endpoint;
  /** The metrics/health HTTP port, when enabled. */
  readonly metricsPort: number | undefined;
  readonly metrics: KeyServiceMetrics;
  /** Checks the certificate and allow-list files now (tests; a poll does it otherwise). */
  reload(): Promise<void>;
  /** Keys are served now (KMS mode: false until the KMS unwrapped the master secret, or after it refused it). */
  serving(): boolean;
  /** Settles when keys are first served. */
  readonly whenServing: Promise<void>;
  /** NOT_SERVING, drain, close everything, wipe the secrets. Idempotent. */
  stop(): Promise<void>;
}

export interface StartKeyServiceOptions {
  readonly config: KeyServiceConfig;
  /** Operational log lines. */
  readonly logger: Logger;
  /** The audit trail; the operational logger when unset. */
  readonly audit?: Logger;
  /** false: no per-request metrics (only bench/keyservice's cost profile turns them off). */
  readonly requestMetrics?: boolean;
}

/**
 * Starts the key service. Everything that can be wrong with its inputs (secret files, TLS
 * files, allow-list) is found here, before anything listens, and throws with a message that
 * names the file and the fix.
 */
export async function startKeyService(options: StartKeyServiceOptions): Promise<RunningKeyService> {
  const { config, logger } = options;
  const audit = options.audit ?? logger;
  // Held as a KeyObject (a copy in native memory, and four times cheaper per derivation); the
  // JavaScript copy is wiped at once. With --kms it is unwrapped below, once metrics exist.
  let plainSecret: KeyObject | undefined;
  if (!config.kms) {
    const masterSecretBytes = await readKeyMaterial(config.masterSecretFile, "master secret");
    plainSecret = masterKeyObject(masterSecretBytes);
    masterSecretBytes.fill(0);
  }
  const cleanups: (() => Promise<void> | void)[] = [];
  const cleanup = async (): Promise<void> => {
    for (const fn of cleanups.reverse()) await fn();
  };
  try {
    const salt = await readKeyMaterial(config.saltFile, "salt");
    cleanups.push(() => {
      salt.fill(0);
    });
    const allow = await openAllowSource({ entries: config.allow, file: config.allowFile, pollMs: config.reloadMs, logger });
    cleanups.push(() => allow.close());

    const metrics = new KeyServiceMetrics();
    // KMS mode: an unreachable KMS starts the service not ready (GetDataKey UNAVAILABLE) and
    // keeps trying; a refusal throws here, before anything listens.
    const kms = config.kms ? await openKmsMasterSecret(config.kms, metrics.registry, logger) : undefined;
    if (kms) cleanups.push(() => kms.close());
    const masterSecret = kms ? () => kms.current() : plainSecret;
    if (!masterSecret) throw new Error("internal: neither a plain nor a wrapped master secret");
    let watcher: TlsFileWatcher | undefined;
    if (config.tls) {
      const { certFile, keyFile, clientCaFile } = config.tls;
      const tls = await TlsFileWatcher.open({
        files: { certFile, keyFile, caFile: clientCaFile },
        logger: logger.child({ tls: "server" }),
        pollMs: config.reloadMs,
      });
      watcher = tls;
      cleanups.push(() => tls.close());
      const showExpiry = (): void => {
        const leaf = tls.current().leaf;
        if (leaf) metrics.setCertificateExpiry(new Date(leaf.validTo));
      };
      showExpiry();
      tls.addIdentityCertificateListener(showExpiry);
    } else {
      logger.warn(
        { endpoint: config.listen },
        "INSECURE DEVELOPMENT MODE: no TLS and no authorisation; any local process can get any key",
      );
    }

    // Before anything listens: no decision is ever made on caches that have not listed.
    let authorizer: Authorizer | undefined;
    if (config.authz.mode === "kubernetes") {
      // Loaded only here: a service without it never loads the Kubernetes client.
      const { startKubernetesAuthorizer } = await import("./authz/authorizer.js");
      const started = await startKubernetesAuthorizer({ config: config.authz, logger });
      authorizer = started;
      cleanups.push(() => started.stop());
    }

    const health = new HealthStatus([KEY_SERVICE_NAME]);
    const keyProto = loadProto<KeyServiceProto>("keyservice.proto");
    const healthProto = loadProto<HealthProto>("health.proto");
    const keyDefinition = keyProto.cloak.keyservice.v1.KeyService.service;
    // The audit line is this service's one line per request (no generic per-call line).
    const implementation = keyServiceImplementation({
      masterSecret,
      salt,
      authMode: config.tls ? "mtls" : "insecure-dev",
      allowList: () => allow.current(),
      audit,
      ...(options.requestMetrics === false ? {} : { observe: (result: string, seconds: number) => metrics.observe(result, seconds) }),
      authorizer,
    });
    const credentials = watcher
      ? // grpc-js names these parameters the other way round; each provider serves both roles here.
        experimental.createCertificateProviderServerCredentials(watcher, watcher, true)
      : undefined;
    const server: RunningServer = await startGrpcServer({
      endpoint: config.listen,
      logger,
      drainMs: config.drainMs,
      ...(credentials ? { credentials } : {}),
      services: [
        { definition: keyDefinition, implementation },
        { definition: healthProto.grpc.health.v1.Health.service, implementation: healthHandlers(health) },
      ],
    });
    cleanups.push(() => server.stop());

    let http: RunningHttpEndpoint | undefined;
    if (config.metricsListen) {
      http = await startHttpEndpoint({
        endpoint: config.metricsListen,
        metrics,
        ready: () => health.get("") === "SERVING",
        ...(kms ? { readyDetail: () => kms.detail() } : {}),
        logger,
      });
      const running = http;
      cleanups.push(() => running.stop());
    }
    let stopping: Promise<void> | undefined;
    let served: () => void = () => undefined;
    const whenServing = new Promise<void>((resolve) => (served = resolve));
    if (kms) {
      kms.onChange((serving) => {
        if (stopping) return;
        health.setAll(serving ? "SERVING" : "NOT_SERVING");
        if (serving) served();
      });
    }
    if (!kms || kms.serving) {
      health.setAll("SERVING");
      served();
    }

    return {
      endpoint: server.endpoint,
      metricsPort: http?.port,
      metrics,
      serving: () => health.get("") === "SERVING",
      whenServing,
      async reload() {
        await watcher?.check();
        await allow.check();
      },
      stop() {
        stopping ??= (async () => {
          health.setAll("NOT_SERVING");
          await cleanup();
        })();
        return stopping;
      },
    };
  } catch (err) {
    await cleanup();
    throw err;
  }
}
