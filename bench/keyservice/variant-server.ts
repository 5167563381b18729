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
import { startKeyService } from "../../keyservice/server.js";

export const VARIANTS = ["no-audit", "no-metrics", "no-audit-no-metrics"] as const;
export type Variant = (typeof VARIANTS)[number];

async function main(): Promise<void> {
  const [variant, ...argv] = process.argv.slice(2);
  if (!(VARIANTS as readonly string[]).includes(variant ?? "")) throw new Error(`usage: variant-server ${VARIANTS.join("|")} <keyservice args>`);
  const config = parseKeyServiceArgs(argv);
  // The same asynchronous, batched stdout as `cloak keyservice` (keyservice/main.ts).
  const destination = pino.destination({ dest: 1, sync: false, minLength: 4096, periodicFlush: 200 } as Parameters<typeof pino.destination>[0]);
  const logger = createLogger({ component: "keyservice", destination });
  const audit = variant?.includes("no-audit")
    ? createLogger({ component: "keyservice", level: "silent", redact: false })
    : createLogger({ component: "keyservice", destination, redact: false }).child({ audit: true });
  const service = await startKeyService({ config, logger, audit, requestMetrics: !variant?.includes("no-metrics") });
  logger.info({ endpoint: formatEndpoint(service.endpoint), metricsPort: service.metricsPort, variant }, "key service ready");
  process.once("SIGTERM", () => {
    void service.stop().then(() => {
      destination.flushSync();
      process.exit(0);
    });
  });
}

main().catch((err: unknown) => {
  process.stderr.write(`variant-server: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
