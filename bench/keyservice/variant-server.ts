/**
 * cloak's key service with a part turned off, for the benchmark's cost profile: where the CPU
 * per call that cloak spends beyond the bare baseline goes. Same arguments as `cloak keyservice`
 * after the variant:
 *
 *   variant-server.js no-audit|no-metrics|no-audit-no-metrics <cloak keyservice arguments>
 *
 * "no-audit" writes the audit line nowhere (a silent logger), "no-metrics" skips the per-request
 * counter and histogram. Everything else — TLS, allow-list, handler, health — is the service as
 * shipped (keyservice/server.ts).
 */
import { pino } from "pino";
import { createLogger } from "../../lib/log.js";
import { formatEndpoint } from "../../lib/grpc-server.js";
import { parseKeyServiceArgs } from "../../keyservice/config.js";
import { LineBatcher } from "../../keyservice/log-batch.js";
import { startKeyService } from "../../keyservice/server.js";

export const VARIANTS = ["no-audit", "no-metrics", "no-audit-no-metrics"] as const;
export type Variant = (typeof VARIANTS)[number];

async function main(): Promise<void> {
  const [variant, ...argv] = process.argv.slice(2);
  if (!(VARIANTS as readonly string[]).includes(variant ?? "")) throw new Error(`usage: variant-server ${VARIANTS.join("|")} <keyservice args>`);
  const config = parseKeyServiceArgs(argv);
  // The same batched, asynchronous stdout as `cloak keyservice` (keyservice/main.ts).
  const stream = pino.destination({ dest: 1, sync: false });
  const destination = new LineBatcher(stream, { maxBytes: 16_384, maxDelayMs: 200 });
  const logger = createLogger({ component: "keyservice", destination });
  const audit = variant?.includes("no-audit")
    ? createLogger({ component: "keyservice", level: "silent", redact: false })
    : createLogger({ component: "keyservice", destination, redact: false }).child({ audit: true });
  const service = await startKeyService({ config, logger, audit, requestMetrics: !variant?.includes("no-metrics") });
  logger.info({ endpoint: formatEndpoint(service.endpoint), metricsPort: service.metricsPort, variant }, "key service ready");
  process.once("SIGTERM", () => {
    void service.stop().then(() => {
      destination.close();
      stream.flushSync();
      process.exit(0);
    });
  });
}

main().catch((err: unknown) => {
  process.stderr.write(`variant-server: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
