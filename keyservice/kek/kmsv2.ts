import { randomUUID } from "node:crypto";
import { credentials, Metadata, status as GrpcStatus, type ServiceError } from "@grpc/grpc-js";
import { InvalidArgumentError } from "../../lib/errors.js";
import { formatEndpoint, parseEndpoint } from "../../lib/grpc-server.js";
import { loadProto } from "../../lib/proto.js";
import type { ProtoGrpcType as KmsV2Proto } from "../../proto/gen/kms-v2.js";
import type { KeyManagementServiceClient } from "../../proto/gen/v2/KeyManagementService.js";
import { KekDeniedError, KekUnavailableError, type KekBackend, type KekStatus, type WrappedKey } from "./backend.js";

export const KMSV2_BACKEND = "kmsv2";

/**
 * The statuses that mean "the KMS answered no": the key is disabled, destroyed or not this
 * caller's, or the ciphertext is refused. Everything else — UNAVAILABLE (nothing listens),
 * DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, and UNKNOWN/INTERNAL, which is how many plugins
 * report a cloud KMS they cannot reach — says nothing about the key, and is treated as the KMS
 * being unreachable.
 */
const DENIALS = new Set<GrpcStatus>([
  GrpcStatus.PERMISSION_DENIED,
  GrpcStatus.UNAUTHENTICATED,
  GrpcStatus.NOT_FOUND,
  GrpcStatus.FAILED_PRECONDITION,
  GrpcStatus.INVALID_ARGUMENT,
]);

export interface KmsV2Options {
  /** The plugin's socket: `unix:///run/kms/kms.sock` (KMS v2 plugins listen on unix sockets). */
  readonly endpoint: string;
  /** Deadline of each call; 5 s by default. */
  readonly timeoutMs?: number;
  /**
   * Wait, within each call's deadline, for a plugin that is not listening yet instead of
   * failing at once. For the one-shot commands (`cloak keys init|wrap|rewrap`), whose plugin
   * is a sidecar starting beside them (the rewrap Job's); the key service keeps the default:
   * to it an absent plugin is an answer (not ready, retried with backoff).
   */
  readonly waitForReady?: boolean;
}

/**
 * A client of a Kubernetes KMS v2 plugin (proto/kms-v2.proto, the API kube-apiserver uses for
 * etcd encryption): the plugin every cloud and HSM vendor ships then works for cloak as well.
 * One long-lived channel; each call has a deadline and, unless `waitForReady`, never waits for a
 * connection, so that an absent plugin is an answer (unavailable) and not a hang.
 */
export function createKmsV2Backend(options: KmsV2Options): KekBackend {
  const endpoint = parseEndpoint(options.endpoint);
  if (endpoint.kind !== "unix") throw new InvalidArgumentError(`the KMS v2 plugin endpoint must be unix:///path, not ${options.endpoint}`);
  const where = formatEndpoint(endpoint);
  const timeoutMs = options.timeoutMs ?? 5000;
  const Service = loadProto<KmsV2Proto>("kms-v2.proto").v2.KeyManagementService;
  const client: KeyManagementServiceClient = new Service(where, credentials.createInsecure(), {
    // A plugin restarted by kubelet is back within seconds; do not wait grpc-js's default 120 s.
    "grpc.initial_reconnect_backoff_ms": 200,
    "grpc.max_reconnect_backoff_ms": 5000,
    // The ciphertext is < 1 kB by the API's rules; anything large is not a KMS answer.
    "grpc.max_receive_message_length": 1 << 20,
  });

  const waitForReady = options.waitForReady ?? false;
  const call = <T>(
    operation: string,
    start: (metadata: Metadata, options: { deadline: Date }, done: (err: ServiceError | null, value?: T) => void) => void,
  ): Promise<T> =>
    new Promise((resolve, reject) => {
      start(new Metadata({ waitForReady }), { deadline: new Date(Date.now() + timeoutMs) }, (err, value) => {
        if (err) reject(classify(operation, where, err));
        else if (value === undefined) reject(new KekUnavailableError(`KMS ${operation} at ${where} returned nothing`));
        else resolve(value);
      });
    });

  return {
    name: KMSV2_BACKEND,
    endpoint: where,
    async status(): Promise<KekStatus> {
      const res = await call<{ version: string; healthz: string; key_id: string }>("Status", (metadata, callOptions, done) =>
        client.Status({}, metadata, callOptions, done),
      );
      const versionOk = res.version === "v2" || res.version === "v2beta1";
      const healthz = versionOk ? res.healthz : `the plugin speaks KMS API ${JSON.stringify(res.version)}, not v2`;
      return { healthy: versionOk && res.healthz === "ok" && res.key_id !== "", healthz: res.key_id === "" ? "the plugin reports no key id" : healthz, keyId: res.key_id };
    },
    async encrypt(plaintext: Buffer): Promise<WrappedKey> {
      const res = await call<{ ciphertext: Buffer; key_id: string; annotations: Record<string, Buffer> }>("Encrypt", (metadata, callOptions, done) =>
        client.Encrypt({ plaintext, uid: randomUUID() }, metadata, callOptions, done),
      );
      // The API's own rules (api.proto); a plugin breaking them is not one to trust with this.
      if (res.ciphertext.length === 0 || res.ciphertext.length >= 1024) {
        throw new KekDeniedError(`KMS Encrypt at ${where} returned a ciphertext of ${res.ciphertext.length} bytes (the API allows 1..1023)`);
      }
      if (res.key_id === "" || Buffer.byteLength(res.key_id) >= 1024) throw new KekDeniedError(`KMS Encrypt at ${where} returned no usable key id`);
      return { ciphertext: Buffer.from(res.ciphertext), keyId: res.key_id, annotations: copyAnnotations(res.annotations) };
    },
    async decrypt(wrapped: WrappedKey): Promise<Buffer> {
      const res = await call<{ plaintext: Buffer }>("Decrypt", (metadata, callOptions, done) =>
        client.Decrypt(
          { ciphertext: wrapped.ciphertext, key_id: wrapped.keyId, annotations: { ...wrapped.annotations }, uid: randomUUID() },
          metadata,
          callOptions,
          done,
        ),
      );
      return res.plaintext;
    },
    close() {
      client.close();
    },
  };
}

function copyAnnotations(annotations: Record<string, Buffer>): Record<string, Buffer> {
  return Object.fromEntries(Object.entries(annotations).map(([k, v]) => [k, Buffer.from(v)]));
}

function classify(operation: string, where: string, err: ServiceError): Error {
  const message = `KMS ${operation} at ${where}: ${GrpcStatus[err.code] ?? err.code}: ${err.details}`;
  return DENIALS.has(err.code) ? new KekDeniedError(message, { cause: err }) : new KekUnavailableError(message, { cause: err });
}
