import { once } from "node:events";
import { pino } from "pino";
import { CloakError, InvalidArgumentError } from "../lib/errors.js";
import { formatEndpoint, stopOnSignals } from "../lib/grpc-server.js";
import { createLogger } from "../lib/log.js";
import { startupFields } from "../lib/version.js";
import { KeyMaterialError } from "../lib/data-key.js";
import { parseKeyServiceArgs, USAGE } from "./config.js";
import { LineBatcher } from "./log-batch.js";
import { startKeyService, type RunningKeyService } from "./server.js";

/**
 * `cloak keyservice`: runs until SIGTERM/SIGINT. Exit status 2 for a bad command line, 1 when
 * startup is refused (bad secret, certificate or allow-list files), each with a message that
 * names the problem.
 */
export async function main(argv: string[]): Promise<number> {
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(USAGE);
    return 0;
  }
  let config;
  try {
    config = parseKeyServiceArgs(argv);
  } catch (err) {
    if (!(err instanceof InvalidArgumentError)) throw err;
    process.stderr.write(`cloak keyservice: ${err.message}\n\n${USAGE}`);
    return 2;
  }
  // Asynchronous, batched writes: a request's audit line must not wait for stdout, and one
  // write per line (each a thread-pool round trip, plus SonicBoom re-measuring its buffer) cost
  // a tenth of a busy service's CPU. Lines go out at 16 KiB or every 200 ms, whichever comes
  // first (./log-batch.ts); SIGTERM flushes; a crash can lose the last 200 ms.
  const stream = pino.destination({ dest: 1, sync: false });
  const destination = new LineBatcher(stream, { maxBytes: 16_384, maxDelayMs: 200 });
  const logger = createLogger({ component: "keyservice", level: config.logLevel, destination });
  logger.info(startupFields(), "starting cloak keyservice");
  // The audit line's fields are fixed (keyservice/service.ts) and none can hold key material;
  // the redaction net of the operational logger would cost ~10 µs a request here.
  const audit = createLogger({ component: "keyservice", level: config.logLevel, destination, redact: false }).child({ audit: true });
  // Signals are handled from the start: one that arrives while files are still being read
  // stops the process cleanly instead of killing it mid-write.
  let service: RunningKeyService | undefined;
  stopOnSignals(
    [
      {
        stop: async () => {
          await service?.stop();
          await drainLog(destination, stream);
        },
      },
    ],
    logger,
  );
  try {
    service = await startKeyService({ config, logger, audit });
  } catch (err) {
    if (!(err instanceof KeyMaterialError || err instanceof CloakError)) throw err;
    logger.fatal({ err: err.message }, "startup refused");
    await drainLog(destination, stream);
    process.stderr.write(`cloak keyservice: startup refused: ${err.message}\n`);
    return 1;
  }
  const fields = { endpoint: formatEndpoint(service.endpoint), metricsPort: service.metricsPort, tls: config.tls !== undefined };
  if (!service.serving()) {
    // KMS mode with the KMS not answering yet: listening (GetDataKey answers UNAVAILABLE).
    logger.warn({ ...fields, kms: config.kms?.endpoint }, "key service listening, not ready: no keys are served until the KMS unwraps the master secret");
  }
  void service.whenServing.then(() => logger.info(fields, "key service ready"));
  // Serves until a signal stops the process.
  return new Promise<number>(() => undefined);
}

/**
 * Waits until every queued line is written. (flushSync would write the queue while an
 * asynchronous write is still in flight, and lines could land out of order.)
 */
async function drainLog(batcher: LineBatcher, stream: ReturnType<typeof pino.destination>): Promise<void> {
  batcher.close();
  const closed = once(stream, "close");
  stream.end();
  await closed;
}
