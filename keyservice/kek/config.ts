import { InvalidArgumentError } from "../../lib/errors.js";
import { formatEndpoint, parseEndpoint } from "../../lib/grpc-server.js";
import { checkClusterId, WRAPPED_FILE } from "./envelope.js";

/** `cloak keyservice` with --kms: where the plugin is and how the master secret is checked. */
export interface KmsConfig {
  /** unix:///path of the KMS v2 plugin. */
  readonly endpoint: string;
  readonly wrappedMasterSecretFile: string;
  readonly clusterId: string;
  readonly statusIntervalMs: number;
  readonly recheckIntervalMs: number;
  readonly timeoutMs: number;
}

export const KMS_DEFAULTS = {
  wrappedMasterSecret: `/etc/cloak/keys/${WRAPPED_FILE}`,
  statusIntervalMs: 60_000,
  recheckIntervalMs: 300_000,
  timeoutMs: 5_000,
} as const;

/** The parseArgs options of KMS mode (keyservice/config.ts declares them with the others). */
export const KMS_OPTIONS = {
  kms: { type: "string" },
  "wrapped-master-secret": { type: "string" },
  "cluster-id": { type: "string" },
  "kms-status-interval-ms": { type: "string" },
  "kms-recheck-interval-ms": { type: "string" },
  "kms-timeout-ms": { type: "string" },
} as const;

export const KMS_USAGE = `
KMS mode (the master secret wrapped by a KMS v2 plugin; keyservice/README.md):
  --kms unix:///PATH       the KMS v2 plugin's socket; the master secret is read wrapped
  --wrapped-master-secret FILE  the envelope \`cloak keys wrap\` wrote (default ${KMS_DEFAULTS.wrappedMasterSecret})
  --cluster-id ID          this cluster's id, as given to \`cloak keys wrap\`; a blob for another is refused
  --kms-status-interval-ms N   KMS Status polls (health, key rotation) (default ${KMS_DEFAULTS.statusIntervalMs})
  --kms-recheck-interval-ms N  re-decrypts of the blob; a refusal stops serving (default ${KMS_DEFAULTS.recheckIntervalMs})
  --kms-timeout-ms N       deadline of each KMS call (default ${KMS_DEFAULTS.timeoutMs})
`;

type KmsValues = { [K in keyof typeof KMS_OPTIONS]?: string | undefined };

/** undefined without --kms; every KMS flag without --kms is a mistake worth saying. */
export function parseKmsConfig(values: KmsValues, masterSecretGiven: boolean): KmsConfig | undefined {
  if (values.kms === undefined) {
    const stray = Object.keys(KMS_OPTIONS).find((k) => k !== "kms" && values[k as keyof KmsValues] !== undefined);
    if (stray) throw new InvalidArgumentError(`--${stray} needs --kms`);
    return undefined;
  }
  const endpoint = parseEndpoint(values.kms);
  if (endpoint.kind !== "unix") throw new InvalidArgumentError("--kms must be unix:///path: KMS v2 plugins listen on unix sockets");
  if (masterSecretGiven) {
    throw new InvalidArgumentError("--kms reads the master secret wrapped (--wrapped-master-secret); do not also give --master-secret");
  }
  const clusterId = values["cluster-id"];
  if (clusterId === undefined) throw new InvalidArgumentError("--kms needs --cluster-id: the wrapped master secret is bound to it");
  const bad = checkClusterId(clusterId);
  if (bad) throw new InvalidArgumentError(`--cluster-id: ${bad}`);
  return {
    endpoint: formatEndpoint(endpoint),
    wrappedMasterSecretFile: values["wrapped-master-secret"] ?? KMS_DEFAULTS.wrappedMasterSecret,
    clusterId,
    statusIntervalMs: milliseconds(values["kms-status-interval-ms"], KMS_DEFAULTS.statusIntervalMs, "--kms-status-interval-ms"),
    recheckIntervalMs: milliseconds(values["kms-recheck-interval-ms"], KMS_DEFAULTS.recheckIntervalMs, "--kms-recheck-interval-ms"),
    timeoutMs: milliseconds(values["kms-timeout-ms"], KMS_DEFAULTS.timeoutMs, "--kms-timeout-ms"),
  };
}

function milliseconds(text: string | undefined, fallback: number, flag: string): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError(`${flag} must be a positive integer, got ${JSON.stringify(text)}`);
  return n;
}
