import type { Registry } from "prom-client";
import type { Logger } from "../../lib/log.js";
import type { KmsConfig } from "./config.js";
import { MASTER_SECRET_PURPOSE } from "./envelope.js";
import { createKmsV2Backend } from "./kmsv2.js";
import { KmsMasterSecret } from "./master-secret.js";
import { KmsMetrics } from "./metrics.js";

/** `cloak keyservice --kms`: the plugin client, its metrics, and the first unwrap. */
export function openKmsMasterSecret(config: KmsConfig, registry: Registry, logger: Logger): Promise<KmsMasterSecret> {
  return KmsMasterSecret.open({
    backend: createKmsV2Backend({ endpoint: config.endpoint, timeoutMs: config.timeoutMs }),
    context: { purpose: MASTER_SECRET_PURPOSE, clusterId: config.clusterId },
    wrappedFile: config.wrappedMasterSecretFile,
    statusIntervalMs: config.statusIntervalMs,
    recheckIntervalMs: config.recheckIntervalMs,
    maxRetryMs: Math.min(config.statusIntervalMs, 30_000),
    logger: logger.child({ kms: config.endpoint }),
    metrics: new KmsMetrics(registry),
  });
}
