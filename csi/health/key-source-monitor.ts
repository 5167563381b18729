import type { Logger } from "../../lib/log.js";
import type { KeySource } from "../keys/key-source.js";

export interface KeySourceState {
  /** Undefined until the first probe has answered. */
  readonly ready: boolean | undefined;
  /** Why the last probe failed. */
  readonly error?: string;
  /** When `ready` last changed (ms since the epoch). */
  readonly since: number;
}

export interface KeySourceMonitorOptions {
  readonly keys: KeySource;
  readonly log: Logger;
  /** Each probe's outcome (the cloak_csi_key_source_ready gauge). */
  readonly onProbe?: (ready: boolean) => void;
  /** Between probes; 10 s by default. */
  readonly intervalMs?: number;
  /** Each probe's own deadline; 5 s by default. */
  readonly timeoutMs?: number;
  readonly now?: () => number;
}

/**
 * Whether the key source can serve keys, probed in the background. This is readiness, never
 * liveness: a key service outage stops new volumes from being staged, but a restart of the
 * plugin would not bring the key service back — it would only interrupt every node's plugin at
 * once. So the state goes to a log line per change, a gauge, /readyz and the volume condition.
 */
export class KeySourceMonitor {
  private state: KeySourceState;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;
  private readonly now: () => number;

  constructor(private readonly options: KeySourceMonitorOptions) {
    this.now = options.now ?? Date.now;
    this.state = { ready: undefined, since: this.now() };
  }

  get current(): KeySourceState {
    return this.state;
  }

  /** Probes now, then every interval until stop(). Resolves after the first probe. */
  async start(): Promise<void> {
    await this.probeOnce();
    this.schedule();
  }

  /** One probe; concurrent callers share it. */
  probeOnce(): Promise<void> {
    this.running ??= this.probe().finally(() => (this.running = undefined));
    return this.running;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      void this.probeOnce().then(() => this.schedule());
    }, this.options.intervalMs ?? 10_000);
    this.timer.unref();
  }

  private async probe(): Promise<void> {
    const { keys, log } = this.options;
    let error: string | undefined;
    try {
      await keys.probe({ signal: AbortSignal.timeout(this.options.timeoutMs ?? 5_000) });
    } catch (err) {
      error = err instanceof Error ? err.message : String(err);
    }
    const ready = error === undefined;
    this.options.onProbe?.(ready);
    const previous = this.state;
    if (previous.ready !== ready) {
      this.state = { ready, since: this.now(), ...(error === undefined ? {} : { error }) };
      if (ready) {
        log.info({ keySource: keys.kind, ...(previous.ready === false ? { downMs: this.now() - previous.since } : {}) }, "key source ready");
      } else {
        log.warn({ keySource: keys.kind, err: error }, "key source not ready: new volumes cannot be staged until it answers; staged volumes keep working");
      }
    } else if (!ready) {
      // Same state, fresher reason; not logged again (one line per change).
      this.state = { ...previous, ...(error === undefined ? {} : { error }) };
    }
  }
}
