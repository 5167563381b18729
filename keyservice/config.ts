import { isIP } from "node:net";
import { parseArgs } from "node:util";
import { InvalidArgumentError } from "../lib/errors.js";
import { parseEndpoint, type Endpoint } from "../lib/grpc-server.js";
import { AUTHZ_OPTIONS, AUTHZ_USAGE, parseAuthzFlags, type AuthzConfig } from "./authz/config.js";
import { KMS_OPTIONS, KMS_USAGE, parseKmsConfig, type KmsConfig } from "./kek/config.js";

/** Everything `cloak keyservice` is told on its command line, checked. */
export interface KeyServiceConfig {
  readonly listen: Endpoint;
  readonly masterSecretFile: string;
  readonly saltFile: string;
  /** Unset only in insecure development mode. */
  readonly tls: { readonly certFile: string; readonly keyFile: string; readonly clientCaFile: string } | undefined;
  readonly allow: readonly string[];
  readonly allowFile: string | undefined;
  /** Plain-HTTP /metrics, /healthz, /readyz; unset disables it. */
  readonly metricsListen: Extract<Endpoint, { kind: "tcp" }> | undefined;
  /** How often certificate and allow-list files are checked for changes. */
  readonly reloadMs: number;
  readonly drainMs: number;
  readonly logLevel: string | undefined;
  /** Per-node, per-volume authorisation (keyservice/authz/config.ts). */
  readonly authz: AuthzConfig;
  /** The master secret wrapped by a KMS (then masterSecretFile is unused); unset: a plain file. */
  readonly kms: KmsConfig | undefined;
}

export const DEFAULTS = {
  listen: "0.0.0.0:9000",
  masterSecret: "/etc/cloak/keys/master-secret",
  salt: "/etc/cloak/keys/salt",
  tlsCert: "/etc/cloak/tls/tls.crt",
  tlsKey: "/etc/cloak/tls/tls.key",
  clientCa: "/etc/cloak/tls/ca.crt",
  metricsListen: "0.0.0.0:9464",
  reloadMs: 1000,
  drainMs: 5000,
} as const;

export const USAGE = `usage: cloak keyservice [options]

Serves per-volume data keys over mutual TLS to the clients its allow-list names.

  --listen ENDPOINT        host:port or unix:///path (default ${DEFAULTS.listen})
  --master-secret FILE     master secret, >= 32 bytes, not world-readable (default ${DEFAULTS.masterSecret})
  --salt FILE              cluster salt, >= 32 bytes, not world-readable (default ${DEFAULTS.salt})
  --tls-cert FILE          server certificate chain, PEM (default ${DEFAULTS.tlsCert})
  --tls-key FILE           server private key, PEM (default ${DEFAULTS.tlsKey})
  --client-ca FILE         CA that client certificates must chain to (default ${DEFAULTS.clientCa})
  --allow IDENTITY         a client identity or pattern that may get keys (repeatable)
  --allow-file FILE        more of them, one per line, # comments; re-read when it changes
  --metrics-listen HOST:PORT  /metrics, /healthz, /readyz over HTTP (default ${DEFAULTS.metricsListen}; "" turns it off)
  --reload-interval-ms N   how often certificate and allow-list files are checked (default ${DEFAULTS.reloadMs})
  --drain-ms N             how long in-flight calls may finish on SIGTERM (default ${DEFAULTS.drainMs})
  --log-level LEVEL        pino level (default: $LOG_LEVEL or info)
  --insecure-dev           no TLS and no authorisation; only on a unix socket or a loopback address
${AUTHZ_USAGE}${KMS_USAGE}`;

/** Parses and checks the command line; throws InvalidArgumentError with a message for a person. */
export function parseKeyServiceArgs(argv: readonly string[]): KeyServiceConfig {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: false,
      options: {
        listen: { type: "string", default: DEFAULTS.listen },
        // No parseArgs default: --kms must know whether it was given.
        "master-secret": { type: "string" },
        salt: { type: "string", default: DEFAULTS.salt },
        "tls-cert": { type: "string" },
        "tls-key": { type: "string" },
        "client-ca": { type: "string" },
        allow: { type: "string", multiple: true, default: [] },
        "allow-file": { type: "string" },
        "metrics-listen": { type: "string", default: DEFAULTS.metricsListen },
        "reload-interval-ms": { type: "string", default: String(DEFAULTS.reloadMs) },
        "drain-ms": { type: "string", default: String(DEFAULTS.drainMs) },
        "log-level": { type: "string" },
        "insecure-dev": { type: "boolean", default: false },
        ...AUTHZ_OPTIONS,
        ...KMS_OPTIONS,
      },
    }));
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
  const listen = parseEndpoint(values.listen);
  const insecure = values["insecure-dev"];
  const tlsGiven = [values["tls-cert"], values["tls-key"], values["client-ca"]].some((v) => v !== undefined);
  if (insecure && tlsGiven) {
    throw new InvalidArgumentError("--insecure-dev turns TLS off; do not also give --tls-cert, --tls-key or --client-ca");
  }
  if (insecure) checkInsecureEndpoint(listen);
  const metricsText = values["metrics-listen"];
  let metricsListen: KeyServiceConfig["metricsListen"];
  if (metricsText !== "") {
    const endpoint = parseEndpoint(metricsText);
    if (endpoint.kind !== "tcp") throw new InvalidArgumentError("--metrics-listen must be host:port");
    metricsListen = endpoint;
  }
  const allow = values.allow;
  const allowFile = values["allow-file"];
  if (!insecure && allow.length === 0 && allowFile === undefined) {
    throw new InvalidArgumentError("no --allow or --allow-file: no client could get a key; name the node plugin's identity");
  }
  const kms = parseKmsConfig(values, values["master-secret"] !== undefined);
  return {
    listen,
    masterSecretFile: values["master-secret"] ?? DEFAULTS.masterSecret,
    saltFile: values.salt,
    tls: insecure
      ? undefined
      : {
          certFile: values["tls-cert"] ?? DEFAULTS.tlsCert,
          keyFile: values["tls-key"] ?? DEFAULTS.tlsKey,
          clientCaFile: values["client-ca"] ?? DEFAULTS.clientCa,
        },
    allow,
    allowFile,
    metricsListen,
    reloadMs: positiveInteger(values["reload-interval-ms"], "--reload-interval-ms"),
    drainMs: positiveInteger(values["drain-ms"], "--drain-ms"),
    logLevel: values["log-level"],
    authz: parseAuthzFlags(values),
    kms,
  };
}

/**
 * Without TLS a key goes over the wire in the clear to anyone who asks: allowed only where the
 * wire cannot leave this machine.
 */
export function checkInsecureEndpoint(endpoint: Endpoint): void {
  if (endpoint.kind === "unix") return;
  if (isLoopback(endpoint.host)) return;
  throw new InvalidArgumentError(
    `--insecure-dev serves keys without TLS and is allowed only on a unix socket or a loopback address, not ${endpoint.host}`,
  );
}

export function isLoopback(host: string): boolean {
  if (host === "localhost") return true;
  if (isIP(host) === 4) return host.startsWith("127.");
  if (isIP(host) === 6) return host === "::1" || /^(0{0,4}:){7}0{0,3}1$/.test(host) || host.toLowerCase().startsWith("::ffff:127.");
  return false;
}

function positiveInteger(text: string, flag: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError(`${flag} must be a positive integer, got ${JSON.stringify(text)}`);
  return n;
}
