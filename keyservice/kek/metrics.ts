import { Counter, Gauge, type Registry } from "prom-client";

export type MasterSecretState = "unwrapping" | "serving" | "denied";
export const MASTER_SECRET_STATES: readonly MasterSecretState[] = ["unwrapping", "serving", "denied"];

/** The KMS side of the key service, in the key service's registry. */
export class KmsMetrics {
  private readonly up: Gauge;
  private readonly stale: Gauge;
  private readonly state: Gauge<"state">;
  private readonly requests: Counter<"operation" | "result">;

  constructor(registry: Registry) {
    this.up = new Gauge({
      name: "cloak_keyservice_kms_up",
      help: "1 when the last call to the KMS plugin was answered and its Status healthz is ok; 0 while it is unreachable or unhealthy.",
      registers: [registry],
    });
    this.stale = new Gauge({
      name: "cloak_keyservice_kms_wrapped_key_stale",
      help: "1 when the KMS's current key id differs from the one that wrapped the master secret: run `cloak keys rewrap`.",
      registers: [registry],
    });
    this.state = new Gauge({
      name: "cloak_keyservice_master_secret_state",
      help: "1 for the state the master secret is in: unwrapping (not yet; no keys served), serving, denied (the KMS refused it; no keys served).",
      labelNames: ["state"],
      registers: [registry],
    });
    this.requests = new Counter({
      name: "cloak_keyservice_kms_requests_total",
      help: "Calls to the KMS plugin by operation (status, encrypt, decrypt) and result (ok, unavailable, denied).",
      labelNames: ["operation", "result"],
      registers: [registry],
    });
    this.setState("unwrapping");
  }

  setUp(up: boolean): void {
    this.up.set(up ? 1 : 0);
  }

  setStale(stale: boolean): void {
    this.stale.set(stale ? 1 : 0);
  }

  setState(state: MasterSecretState): void {
    for (const s of MASTER_SECRET_STATES) this.state.set({ state: s }, s === state ? 1 : 0);
  }

  request(operation: "status" | "encrypt" | "decrypt", result: "ok" | "unavailable" | "denied"): void {
    this.requests.inc({ operation, result });
  }
}
