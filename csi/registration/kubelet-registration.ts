import { lstat } from "node:fs/promises";
import { join } from "node:path";
import { toGrpcHandlers, type AsyncHandlers, type CallObserver } from "../../lib/grpc-handler.js";
import { startGrpcServer, type RunningServer } from "../../lib/grpc-server.js";
import type { Logger } from "../../lib/log.js";
import { loadProto } from "../../lib/proto.js";
import type { ProtoGrpcType } from "../../proto/gen/pluginregistration.js";
import type { RegistrationHandlers } from "../../proto/gen/pluginregistration/Registration.js";
import type { HealthCheck } from "../health/health-server.js";

/** The CSI versions the plugin speaks, as node-driver-registrar reports them. */
export const SUPPORTED_CSI_VERSIONS = ["1.0.0"];

export type RegistrationState =
  | { readonly state: "waiting"; readonly since: number }
  | { readonly state: "registered"; readonly since: number }
  | { readonly state: "failed"; readonly since: number; readonly error: string };

export interface KubeletRegistrationOptions {
  /** kubelet's plugin registry directory (`/var/lib/kubelet/plugins_registry`, as mounted). */
  readonly dir: string;
  readonly driverName: string;
  /** The CSI socket as kubelet sees it on the node (`/var/lib/kubelet/plugins/<driver>/csi.sock`). */
  readonly kubeletEndpoint: string;
  readonly log: Logger;
  readonly observer?: CallObserver;
  /** Each state change (the cloak_csi_kubelet_registered gauge); `reported` when kubelet said it. */
  readonly onState?: (state: RegistrationState, reported: boolean) => void;
  /** Wait before offering the socket again after kubelet refused; doubles up to maxRetryMs. 10 s by default. */
  readonly retryMs?: number;
  readonly maxRetryMs?: number;
  readonly now?: () => number;
}

/**
 * Plugin registration with kubelet, built into the plugin (what node-driver-registrar does as a
 * sidecar): a `pluginregistration.Registration` server on `<dir>/<driver>-reg.sock`. kubelet's
 * plugin watcher finds the socket, calls GetInfo, registers the driver (NodeGetInfo on the CSI
 * endpoint, the CSINode object) and reports the outcome with NotifyRegistrationStatus.
 *
 * A refusal is logged, counted and shown by /readyz, and the socket is offered again after a
 * backoff (removed and re-created, which kubelet's watcher sees as a new plugin): kubelet does
 * not retry a failed registration by itself, and node-driver-registrar gets the same retry by
 * exiting, which here would stop the whole plugin. A socket removed from under the plugin is
 * re-created by the readiness check, which also retries an offer that failed. stop() removes
 * the socket, so kubelet deregisters the driver while the plugin is down.
 */
export class KubeletRegistration {
  readonly socketPath: string;
  private server: RunningServer | undefined;
  private status: RegistrationState;
  private retryTimer: NodeJS.Timeout | undefined;
  private retryMs: number;
  private stopped = false;
  private offering: Promise<void> | undefined;
  private readonly now: () => number;

  private constructor(private readonly options: KubeletRegistrationOptions) {
    this.socketPath = join(options.dir, `${options.driverName}-reg.sock`);
    this.now = options.now ?? Date.now;
    this.status = { state: "waiting", since: this.now() };
    this.retryMs = options.retryMs ?? 10_000;
  }

  static async start(options: KubeletRegistrationOptions): Promise<KubeletRegistration> {
    const registration = new KubeletRegistration(options);
    options.onState?.(registration.status, false);
    await registration.serve();
    return registration;
  }

  get current(): RegistrationState {
    return this.status;
  }

  /**
   * Readiness: kubelet registered the plugin. Re-creates the socket if it vanished, and tries
   * again when a re-offer failed (no server then): each probe is the next attempt.
   */
  readonly check: HealthCheck = {
    name: "kubelet-registration",
    check: async () => {
      if (!this.stopped && (!this.server || !(await isSocket(this.socketPath)))) {
        this.options.log.warn({ socket: this.socketPath }, "the registration socket is gone; offering it to kubelet again");
        await this.reoffer();
      }
      const s = this.status;
      if (s.state === "registered") return;
      if (s.state === "failed") throw new Error(`kubelet refused the registration: ${s.error}`);
      throw new Error(`waiting for kubelet to register ${this.options.driverName} through ${this.socketPath}`);
    },
  };

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    await this.offering;
    await this.server?.stop();
    this.server = undefined;
  }

  private handlers(): AsyncHandlers<RegistrationHandlers> {
    const { driverName, kubeletEndpoint } = this.options;
    return {
      GetInfo: async () => ({ type: "CSIPlugin", name: driverName, endpoint: kubeletEndpoint, supported_versions: SUPPORTED_CSI_VERSIONS }),
      NotifyRegistrationStatus: async (req, { log }) => {
        if (req.plugin_registered) {
          this.setState({ state: "registered", since: this.now() }, true);
          this.retryMs = this.options.retryMs ?? 10_000;
          log.info({ driver: driverName, endpoint: kubeletEndpoint }, "kubelet registered the plugin");
        } else {
          this.setState({ state: "failed", since: this.now(), error: req.error }, true);
          log.error({ driver: driverName, endpoint: kubeletEndpoint, err: req.error, retryInMs: this.retryMs }, "kubelet refused the registration");
          this.scheduleRetry();
        }
        return {};
      },
    };
  }

  private async serve(): Promise<void> {
    const definition = loadProto<ProtoGrpcType>("pluginregistration.proto").pluginregistration.Registration.service;
    const log = this.options.log.child({ scope: "kubelet-registration" });
    this.server = await startGrpcServer({
      endpoint: { kind: "unix", path: this.socketPath },
      logger: log,
      services: [{ definition, implementation: toGrpcHandlers<RegistrationHandlers>("pluginregistration.Registration", definition, this.handlers(), log, this.options.observer) }],
      drainMs: 2_000,
    });
  }

  /** Removes the socket and serves a new one: to kubelet's watcher, a plugin to register. */
  private reoffer(): Promise<void> {
    this.offering ??= (async () => {
      await this.server?.stop();
      this.server = undefined;
      if (this.stopped) return;
      this.setState({ state: "waiting", since: this.now() }, false);
      await this.serve();
    })().finally(() => (this.offering = undefined));
    return this.offering;
  }

  private scheduleRetry(): void {
    clearTimeout(this.retryTimer);
    const delay = this.retryMs;
    this.retryMs = Math.min(this.retryMs * 2, this.options.maxRetryMs ?? 300_000);
    this.retryTimer = setTimeout(() => {
      this.reoffer().catch((err: unknown) =>
        this.options.log.error({ err: err instanceof Error ? err.message : String(err) }, "cannot offer the registration socket again"),
      );
    }, delay);
    this.retryTimer.unref();
  }

  private setState(state: RegistrationState, reported: boolean): void {
    this.status = state;
    this.options.onState?.(state, reported);
  }
}

async function isSocket(path: string): Promise<boolean> {
  return lstat(path).then(
    (s) => s.isSocket(),
    () => false,
  );
}
