import { setTimeout as sleep } from "node:timers/promises";
import { experimental, Metadata, status as GrpcStatus, type ChannelOptions, type ServiceError } from "@grpc/grpc-js";
import { checkDataKeyRequest } from "../../lib/data-key.js";
import {
  CloakError,
  DeadlineExceededError,
  InternalError,
  InvalidArgumentError,
  PermissionDeniedError,
  UnauthenticatedError,
  UnavailableError,
} from "../../lib/errors.js";
import type { Logger } from "../../lib/log.js";
import { loadProto } from "../../lib/proto.js";
import { TlsFileWatcher } from "../../lib/tls-files.js";
import type { KeyServiceClient } from "../../proto/gen/cloak/keyservice/v1/KeyService.js";
import type { HealthClient } from "../../proto/gen/grpc/health/v1/Health.js";
import type { ProtoGrpcType as HealthProto } from "../../proto/gen/health.js";
import type { ProtoGrpcType as KeyServiceProto } from "../../proto/gen/keyservice.js";
import type { KeySource } from "./key-source.js";
import { openTokenFile } from "./token-file.js";

export interface KeyServiceKeySourceOptions {
  /** The key service, as a gRPC target: `cloak-keyservice.cloak-system.svc:9000`, `127.0.0.1:9000`. */
  readonly target: string;
  /** This node's client certificate and key, and the CA the service's certificate chains to. */
  readonly caFile: string;
  readonly certFile: string;
  readonly keyFile: string;
  /** The name the server certificate must carry when it differs from the target's host. */
  readonly serverName?: string | undefined;
  /** Deadline of each attempt; 3 s by default. */
  readonly callTimeoutMs?: number;
  /** Attempts per key on Unavailable/DeadlineExceeded, the first included; 4 by default. */
  readonly attempts?: number;
  /** Backoff before the second attempt (doubling, with jitter, up to maxBackoffMs); 250 ms by default. */
  readonly initialBackoffMs?: number;
  readonly maxBackoffMs?: number;
  /** How often the certificate files are checked for rotation; 10 s by default. */
  readonly reloadMs?: number;
  /**
   * A projected service-account token (audience: the key service) that proves which pod, on
   * which node, is asking; sent as `authorization: Bearer` with each request and re-read when
   * kubelet renews it. Without it the service can only go by the certificate.
   */
  readonly tokenFile?: string | undefined;
  readonly logger: Logger;
}

const KEY_SERVICE = "cloak.keyservice.v1.KeyService";

/**
 * Keys from the cloak key service, over mutual TLS on one long-lived channel (Constellation's
 * client dials a new connection per key). The client certificate is re-read when it rotates and
 * used from the next connection on. A key service that cannot be reached after the bounded
 * retries is an UnavailableError: NodeStageVolume fails with Unavailable and kubelet retries,
 * while volumes already staged need no key and keep working.
 */
export async function createKeyServiceKeySource(options: KeyServiceKeySourceOptions): Promise<KeySource> {
  const { target, logger } = options;
  const callTimeoutMs = options.callTimeoutMs ?? 3000;
  const attempts = Math.max(1, options.attempts ?? 4);
  const initialBackoffMs = options.initialBackoffMs ?? 250;
  const maxBackoffMs = options.maxBackoffMs ?? 2000;

  const tls = await TlsFileWatcher.open({
    files: { caFile: options.caFile, certFile: options.certFile, keyFile: options.keyFile },
    logger: logger.child({ tls: "keyservice-client" }),
    pollMs: options.reloadMs ?? 10_000,
  });
  const credentials = experimental.createCertificateProviderChannelCredentials(tls, tls);
  const channelOptions: ChannelOptions = {
    // grpc-js backs off reconnects up to 120 s by default: a key service back after an outage
    // would then go unused for up to two minutes. Volumes wait on it, so retry sooner.
    "grpc.initial_reconnect_backoff_ms": 250,
    "grpc.max_reconnect_backoff_ms": 5000,
    ...(options.serverName ? { "grpc.ssl_target_name_override": options.serverName, "grpc.default_authority": options.serverName } : {}),
  };
  const KeyService = loadProto<KeyServiceProto>("keyservice.proto").cloak.keyservice.v1.KeyService;
  const Health = loadProto<HealthProto>("health.proto").grpc.health.v1.Health;
  const keys: KeyServiceClient = new KeyService(target, credentials, channelOptions);
  // The health client shares the key client's channel: one connection for both.
  const health: HealthClient = new Health(target, credentials, { ...channelOptions, channelOverride: keys.getChannel() });
  let closed = false;
  const token = options.tokenFile === undefined ? undefined : openTokenFile(options.tokenFile);

  const getOnce = (keyId: string, length: number, signal: AbortSignal | undefined, bearer: string | undefined): Promise<Buffer> =>
    new Promise((resolve, reject) => {
      // waitForReady: while the channel waits out a reconnect backoff (the service was down),
      // a call queues for the next attempt instead of failing at once, so a service that is
      // back is found within the call's deadline rather than after the retries ran out.
      const metadata = new Metadata({ waitForReady: true });
      if (bearer !== undefined) metadata.set("authorization", `Bearer ${bearer}`);
      const call = keys.GetDataKey(
        { data_key_id: keyId, length },
        metadata,
        { deadline: Date.now() + callTimeoutMs },
        (err, response) => {
          signal?.removeEventListener("abort", cancel);
          if (err) return reject(err);
          const received = response?.data_key;
          if (!received || received.length !== length) {
            received?.fill(0);
            return reject(new InternalError(`the key service returned ${received?.length ?? 0} bytes for a ${length}-byte key`));
          }
          // The decoded bytes are a view into the message buffer: copy them out, wipe the view.
          const key = Buffer.from(received);
          received.fill(0);
          resolve(key);
        },
      );
      const cancel = (): void => call.cancel();
      signal?.addEventListener("abort", cancel, { once: true });
    });

  return {
    kind: "keyservice",
    async getKey(keyId, length, callOptions) {
      if (closed) throw new UnavailableError("the key service client is closed");
      checkDataKeyRequest(keyId, length);
      const signal = callOptions?.signal;
      let backoff = initialBackoffMs;
      let reread = false;
      for (let attempt = 1; ; attempt++) {
        if (signal?.aborted) throw new DeadlineExceededError(`gave up waiting for the key of ${keyId}: the call was cancelled`);
        const bearer = await token?.current();
        try {
          return await getOnce(keyId, length, signal, bearer);
        } catch (err) {
          if (signal?.aborted) throw new DeadlineExceededError(`gave up waiting for the key of ${keyId}: the call was cancelled`);
          // A token refused just as kubelet renewed it: read the file again and retry once.
          if (token && !reread && isServiceError(err) && err.code === GrpcStatus.UNAUTHENTICATED) {
            reread = true;
            if ((await token.reload()) !== bearer) {
              attempt--;
              continue;
            }
          }
          if (!isRetryable(err)) throw mapFailure(err, target);
          if (attempt >= attempts) {
            throw new UnavailableError(
              `key service ${target} is unavailable (${describe(err)}) after ${attempts} attempts; ` +
                `volumes cannot be staged until it answers, volumes already staged keep working`,
              { cause: err },
            );
          }
          const delay = Math.round(backoff / 2 + (Math.random() * backoff) / 2);
          logger.warn({ data_key_id: keyId, attempt, retryInMs: delay, err: describe(err) }, "key service call failed; retrying");
          await sleep(delay, undefined, signal ? { signal } : {}).catch(() => undefined);
          backoff = Math.min(backoff * 2, maxBackoffMs);
        }
      }
    },
    probe(probeOptions) {
      if (closed) return Promise.reject(new UnavailableError("the key service client is closed"));
      return new Promise<void>((resolve, reject) => {
        const call = health.Check({ service: KEY_SERVICE }, new Metadata(), { deadline: Date.now() + callTimeoutMs }, (err, response) => {
          probeOptions?.signal?.removeEventListener("abort", cancel);
          if (err) return reject(new UnavailableError(`key service ${target} does not answer health checks: ${describe(err)}`));
          if (response?.status !== "SERVING") return reject(new UnavailableError(`key service ${target} is ${response?.status ?? "UNKNOWN"}`));
          resolve();
        });
        const cancel = (): void => call.cancel();
        probeOptions?.signal?.addEventListener("abort", cancel, { once: true });
      });
    },
    close() {
      if (!closed) {
        closed = true;
        health.close();
        keys.close();
        tls.close();
      }
      return Promise.resolve();
    },
  };
}

/** An error status from grpc-js (our own CloakErrors carry a numeric code too, and are not). */
function isServiceError(err: unknown): err is ServiceError {
  return err instanceof Error && !(err instanceof CloakError) && typeof (err as Partial<ServiceError>).code === "number";
}

function isRetryable(err: unknown): boolean {
  return isServiceError(err) && (err.code === GrpcStatus.UNAVAILABLE || err.code === GrpcStatus.DEADLINE_EXCEEDED);
}

function describe(err: unknown): string {
  if (isServiceError(err)) return `${GrpcStatus[err.code]}: ${err.details}`;
  return err instanceof Error ? err.message : String(err);
}

/** What the node plugin's caller sees for an answer that retrying will not change. */
function mapFailure(err: unknown, target: string): CloakError {
  if (err instanceof CloakError) return err;
  if (!isServiceError(err)) return new InternalError(describe(err), { cause: err });
  switch (err.code) {
    case GrpcStatus.INVALID_ARGUMENT:
      return new InvalidArgumentError(`key service ${target} refused the request: ${err.details}`, { cause: err });
    case GrpcStatus.PERMISSION_DENIED:
      return new PermissionDeniedError(`key service ${target} refused the key: ${err.details}`, { cause: err });
    case GrpcStatus.UNAUTHENTICATED:
      return new UnauthenticatedError(`key service ${target} did not accept this node's credentials: ${err.details}`, { cause: err });
    default:
      return new InternalError(`key service ${target} failed: ${describe(err)}`, { cause: err });
  }
}

