import { readdir } from "node:fs/promises";
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import { registerBuildInfo } from "../lib/build-info.js";
import type { CallObserver } from "../lib/grpc-handler.js";

export interface CsiMetricsOptions {
  /** Where the decrypted mappings appear; /dev/mapper unless a test says otherwise. */
  readonly mapperDir?: string;
  /** The prefix of cloak's mapping names (csi/luks/luks-device.ts mapperName). */
  readonly mappingPrefix?: string;
}

/**
 * The CSI plugin's Prometheus metrics, in a registry of their own (no global state). Every RPC
 * of every service is counted through the one gRPC wrapper (lib/grpc-handler.ts): this is its
 * CallObserver. The method label is the gRPC method path without its leading slash
 * (`csi.v1.Node/NodeStageVolume`), the code label the status code's name (`OK`, `ABORTED`, …).
 */
export class CsiMetrics implements CallObserver {
  readonly registry = new Registry();
  private readonly requests: Counter<"method" | "code">;
  private readonly duration: Histogram<"method">;
  private readonly inFlight: Gauge<"method">;
  private readonly quarantined: Counter<"store">;
  private readonly keySourceReady: Gauge;
  private readonly kubeletRegistered: Gauge;
  private readonly registrationReports: Counter<"registered">;

  constructor(options: CsiMetricsOptions = {}) {
    const registers = [this.registry];
    this.requests = new Counter({
      name: "cloak_csi_requests_total",
      help: "CSI (and registration) calls answered, by method and gRPC status code name.",
      labelNames: ["method", "code"],
      registers,
    });
    this.duration = new Histogram({
      name: "cloak_csi_request_duration_seconds",
      help: "Time from receiving a call to answering it, by method.",
      labelNames: ["method"],
      // Discovery calls take microseconds, NodeStageVolume (luksFormat, mkfs) seconds, a
      // snapshot or clone copy minutes.
      buckets: [0.001, 0.005, 0.025, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
      registers,
    });
    this.inFlight = new Gauge({
      name: "cloak_csi_requests_in_flight",
      help: "Calls received and not answered yet, by method (e.g. stages and unstages in progress).",
      labelNames: ["method"],
      registers,
    });
    // Present from the start, so that "nothing in progress" is 0 rather than absent.
    for (const method of ["csi.v1.Node/NodeStageVolume", "csi.v1.Node/NodeUnstageVolume"]) this.inFlight.set({ method }, 0);
    this.quarantined = new Counter({
      name: "cloak_csi_records_quarantined_total",
      help: "Volume and snapshot records that could not be read and were moved aside, by record store.",
      labelNames: ["store"],
      registers,
    });
    const mapperDir = options.mapperDir ?? "/dev/mapper";
    const prefix = options.mappingPrefix ?? "cloak-";
    new Gauge({
      name: "cloak_csi_volumes_staged",
      help: "Encrypted volumes open on this node (cloak's dm-crypt mappings), counted at scrape time.",
      registers,
      async collect() {
        const names = await readdir(mapperDir).catch(() => [] as string[]);
        this.set(names.filter((n) => n.startsWith(prefix)).length);
      },
    });
    this.keySourceReady = new Gauge({
      name: "cloak_csi_key_source_ready",
      help: "1 while the key source answered its last probe, 0 while it does not (new volumes cannot be staged then; staged ones keep working).",
      registers,
    });
    this.kubeletRegistered = new Gauge({
      name: "cloak_csi_kubelet_registered",
      help: "1 once kubelet reported this plugin registered, 0 before that or after kubelet reported a failure.",
      registers,
    });
    this.registrationReports = new Counter({
      name: "cloak_csi_kubelet_registration_reports_total",
      help: "Registration outcomes kubelet reported (NotifyRegistrationStatus), by result.",
      labelNames: ["registered"],
      registers,
    });
    collectDefaultMetrics({ register: this.registry, prefix: "cloak_csi_" });
    registerBuildInfo(this.registry, "csi");
  }

  callStarted(method: string): (code: string, seconds: number) => void {
    this.inFlight.inc({ method });
    return (code, seconds) => {
      this.inFlight.dec({ method });
      this.requests.inc({ method, code });
      this.duration.observe({ method }, seconds);
    };
  }

  /**
   * A record that could not be parsed was moved aside (the record store's onQuarantine). The
   * label is the store, the directory below `records/` (`volumes`, `snapshots`), whether `path`
   * is where the record was or where it went; the reason is free text, for the log line, and
   * would make an unbounded label.
   */
  recordQuarantined(path: string, _reason: string): void {
    const parts = path.split("/");
    const at = parts.lastIndexOf("records");
    this.quarantined.inc({ store: (at >= 0 ? parts[at + 1] : undefined) ?? "unknown" });
  }

  setKeySourceReady(ready: boolean): void {
    this.keySourceReady.set(ready ? 1 : 0);
  }

  /** `reported` is whether kubelet said anything yet: before that the plugin counts as unregistered. */
  setKubeletRegistration(registered: boolean, reported: boolean): void {
    this.kubeletRegistered.set(registered ? 1 : 0);
    if (reported) this.registrationReports.inc({ registered: String(registered) });
  }
}
