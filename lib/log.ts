import { pino, type Logger as PinoLogger, type DestinationStream } from "pino";

export type Logger = PinoLogger;

export interface LoggerOptions {
  /** Which program is logging: "csi", "keyservice", "netd". */
  readonly component: string;
  /** pino level; LOG_LEVEL in the environment when unset, else "info". */
  readonly level?: string | undefined;
  /** Where lines go; stdout when unset. Tests pass a stream to read what was logged. */
  readonly destination?: DestinationStream;
  /**
   * false turns the secret-field redaction off. Only for a logger whose every line is built
   * from a fixed set of fields that cannot hold a secret (the key service's audit line, one per
   * request, where redaction cost more than deriving the key).
   */
  readonly redact?: boolean;
}

/**
 * Field names that may hold key material or CSI secrets. The handlers never log them on
 * purpose; this is the net under that rule, so a careless `log.info({ req })` still prints
 * "[redacted]" instead of a passphrase.
 */
const SECRET_PATHS = [
  "secrets",
  "*.secrets",
  "req.secrets",
  "key",
  "*.key",
  "data_key",
  "*.data_key",
  "passphrase",
  "*.passphrase",
  "privateKey",
  "*.privateKey",
];

/** Structured JSON logs, one line per event. */
export function createLogger(options: LoggerOptions): Logger {
  const level = options.level ?? process.env["LOG_LEVEL"] ?? "info";
  const config = {
    level,
    base: { component: options.component },
    ...(options.redact === false ? {} : { redact: { paths: SECRET_PATHS, censor: "[redacted]" } }),
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  return options.destination ? pino(config, options.destination) : pino(config);
}
