import { createHmac, timingSafeEqual, type KeyObject } from "node:crypto";
import { masterKeyObject, readKeyMaterial } from "../../lib/data-key.js";
import { UnavailableError } from "../../lib/errors.js";
import type { Logger } from "../../lib/log.js";
import { KekDeniedError, KekUnavailableError, type KekBackend } from "./backend.js";
import { parseEnvelope, type Envelope, type WrapContext } from "./envelope.js";
import type { KmsMetrics, MasterSecretState } from "./metrics.js";
import { unwrapSecret } from "./wrap.js";

export interface KmsMasterSecretOptions {
  readonly backend: KekBackend;
  readonly context: WrapContext;
  /** The envelope (`master-secret.wrapped`); re-read when it changes (a rewrap). */
  readonly wrappedFile: string;
  /** How often Status is asked (health, rotation) and the file checked for a new blob. */
  readonly statusIntervalMs: number;
  /** How often, while serving, the blob is decrypted again to learn whether the KMS still allows it. */
  readonly recheckIntervalMs: number;
  /** Backoff between unwrap attempts while the KMS cannot be reached: 250 ms doubling up to this. */
  readonly maxRetryMs: number;
  readonly logger: Logger;
  readonly metrics: KmsMetrics;
}

/**
 * The master secret when a KMS holds its key-encryption key. It is unwrapped once and kept in
 * memory only; after that the KMS is needed for nothing but checks, and its two kinds of
 * failure are handled apart:
 *
 * - unreachable (plugin down, timeouts, errors that say nothing about the key): keys keep
 *   being served from memory; it is reported (readiness detail, cloak_keyservice_kms_up, a log
 *   line when it starts and when it ends). Before the first unwrap that means no keys at all:
 *   not ready, GetDataKey UNAVAILABLE, retried with backoff.
 * - denied (the periodic re-decrypt is refused: key disabled or destroyed, access revoked, a
 *   blob for another cluster): the secret is dropped and no key is served until the KMS opens
 *   the blob again.
 *
 * The secret never changes within a process: a blob that unwraps to a different secret (a
 * replaced Secret) is refused and logged, because every volume's key would change with it.
 */
export class KmsMasterSecret {
  private state: MasterSecretState = "unwrapping";
  private secret: KeyObject | undefined;
  /** HMAC of a fixed text under the secret: recognises the same secret again without keeping a copy. */
  private fingerprint: Buffer | undefined;
  private unwrappedAt: Date | undefined;
  private envelope: Envelope;
  private fileText: string;
  private fileProblem: string | undefined;
  private kms: { reachable: boolean; healthy: boolean; since: Date; problem: string | undefined; keyId: string | undefined } = {
    reachable: true,
    healthy: true,
    since: new Date(),
    problem: undefined,
    keyId: undefined,
  };
  private stale = false;
  private lastFailure = "";
  private retryMs = 250;
  private readonly listeners = new Set<(serving: boolean) => void>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private queue: Promise<void> = Promise.resolve();
  private closed = false;

  private constructor(
    private readonly o: KmsMasterSecretOptions,
    text: string,
  ) {
    this.fileText = text;
    this.envelope = parseEnvelope(text, o.wrappedFile);
  }

  /**
   * Reads the envelope and tries to unwrap it once. A file that cannot be used and an explicit
   * refusal by the KMS throw (startup is refused with that message); an unreachable KMS does
   * not: the service starts not ready and keeps trying.
   */
  static async open(o: KmsMasterSecretOptions): Promise<KmsMasterSecret> {
    let holder: KmsMasterSecret | undefined;
    try {
      holder = new KmsMasterSecret(o, await readEnvelopeFile(o.wrappedFile));
      await holder.unwrap();
    } catch (err) {
      // The backend is ours from here on, whichever step refused: a file that is not an
      // envelope must not leave the plugin client open any more than a KMS refusal does.
      if (holder) holder.close();
      else o.backend.close();
      throw err;
    }
    // The first Status now, so that health, rotation and the readiness detail are known from
    // the start; the timer takes over after that.
    if (holder.serving) await holder.checkNow();
    holder.schedule("status", o.statusIntervalMs);
    return holder;
  }

  /** The secret to derive keys from; UNAVAILABLE (to the caller of GetDataKey) when there is none. */
  current(): KeyObject {
    if (this.secret) return this.secret;
    throw new UnavailableError(
      this.state === "denied"
        ? `no keys are served: the KMS refused the master secret (${this.lastFailure})`
        : `no keys are served yet: the master secret is not unwrapped (${this.lastFailure || "the KMS has not answered"})`,
    );
  }

  get serving(): boolean {
    return this.state === "serving";
  }

  onChange(listener: (serving: boolean) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Lines for /readyz: what holds, and what an operator should look at. */
  detail(): string[] {
    const lines: string[] = [];
    const { backend } = this.o;
    if (this.state === "serving") {
      lines.push(`master secret: unwrapped at ${this.unwrappedAt?.toISOString()} by the KMS at ${backend.endpoint} (key id ${this.envelope.keyId})`);
    } else if (this.state === "denied") {
      lines.push(`master secret: DENIED by the KMS at ${backend.endpoint}; no keys are served: ${this.lastFailure}`);
    } else {
      lines.push(`master secret: not unwrapped yet; no keys are served: ${this.lastFailure || "waiting for the KMS"}`);
    }
    if (!this.kms.reachable || !this.kms.healthy) {
      const what = this.kms.reachable ? "unhealthy" : "UNREACHABLE";
      lines.push(`kms: ${what} since ${this.kms.since.toISOString()}: ${this.kms.problem}${this.state === "serving" ? " (serving from memory)" : ""}`);
    } else {
      lines.push(`kms: ok${this.kms.keyId ? ` (current key id ${this.kms.keyId})` : ""}`);
    }
    if (this.stale) {
      lines.push(`kms: the master secret is wrapped under key ${this.envelope.keyId}, the KMS now encrypts with ${this.kms.keyId}: run \`cloak keys rewrap\``);
    }
    if (this.fileProblem) lines.push(`wrapped master secret file: ${this.fileProblem}`);
    return lines;
  }

  /** Runs the status check now (tests); the timers do it otherwise. */
  checkNow(): Promise<void> {
    return this.enqueue(() => this.statusTick());
  }

  /** Runs the re-decrypt now (tests); the timers do it otherwise. */
  recheckNow(): Promise<void> {
    return this.enqueue(() => this.unwrapTick());
  }

  close(): void {
    this.closed = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.listeners.clear();
    // A KeyObject cannot be wiped from JavaScript; dropping the last reference lets Node free
    // its native copy. The JavaScript copies were wiped when it was made.
    this.secret = undefined;
    this.o.backend.close();
  }

  private enqueue(task: () => Promise<void>): Promise<void> {
    const run = this.queue.then(async () => {
      if (!this.closed) await task();
    });
    this.queue = run.catch(() => undefined);
    return run;
  }

  private schedule(which: "status" | "unwrap", ms: number): void {
    if (this.closed) return;
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      void this.enqueue(() => (which === "status" ? this.statusTick() : this.unwrapTick())).finally(() => {
        if (which === "status") this.schedule("status", this.o.statusIntervalMs);
        else this.schedule("unwrap", this.state === "serving" ? this.o.recheckIntervalMs : this.nextRetry());
      });
    }, ms);
    timer.unref();
    this.timers.add(timer);
  }

  private nextRetry(): number {
    if (this.state === "denied") return this.o.recheckIntervalMs;
    const ms = this.retryMs;
    this.retryMs = Math.min(this.retryMs * 2, this.o.maxRetryMs);
    return ms;
  }

  /** The first attempt, at startup: denial throws; unreachable schedules retries. */
  private async unwrap(): Promise<void> {
    try {
      await this.decryptAndServe();
    } catch (err) {
      if (!(err instanceof KekUnavailableError)) throw err;
      this.noteFailure(err);
      this.o.logger.warn({ kms: this.o.backend.endpoint, err: err.message }, "KMS unreachable at startup: not ready, no keys served until the master secret is unwrapped");
    }
    this.schedule("unwrap", this.state === "serving" ? this.o.recheckIntervalMs : this.nextRetry());
  }

  /** Periodic: the first unwrap while there is none, the revocation check while serving. */
  private async unwrapTick(): Promise<void> {
    // A rewrap may have replaced the blob (and the old key been disabled since): judge the
    // newest one.
    await this.checkFile();
    try {
      await this.decryptAndServe();
    } catch (err) {
      this.noteFailure(err);
      if (err instanceof KekUnavailableError) {
        this.o.logger.debug({ err: err.message }, "KMS unreachable");
        return;
      }
      if (err instanceof KekDeniedError) {
        this.deny(err);
        return;
      }
      this.o.logger.error({ err: (err as Error).message }, "checking the wrapped master secret failed");
    }
  }

  private async decryptAndServe(): Promise<void> {
    const { backend, context, metrics } = this.o;
    let plain: Buffer;
    try {
      plain = await unwrapSecret(backend, context, this.envelope);
    } catch (err) {
      if (err instanceof KekUnavailableError) metrics.request("decrypt", "unavailable");
      if (err instanceof KekDeniedError) {
        // A refusal is an answer: the KMS is there (the detail and kms_up say so), and says no.
        metrics.request("decrypt", "denied");
        this.markReachable();
      }
      throw err;
    }
    metrics.request("decrypt", "ok");
    this.markReachable();
    try {
      const key = masterKeyObject(plain);
      const fingerprint = fingerprintOf(key);
      if (this.fingerprint && !timingSafeEqual(fingerprint, this.fingerprint)) {
        throw new KekDeniedError(
          `${this.o.wrappedFile} now unwraps to a different master secret than the one this process started with: refusing it (every volume's key would change)`,
        );
      }
      this.fingerprint = fingerprint;
      if (this.state !== "serving") {
        this.secret = key;
        this.unwrappedAt = new Date();
        const from = this.state;
        this.setState("serving");
        this.retryMs = 250;
        this.o.logger.info(
          { kms: backend.endpoint, keyId: this.envelope.keyId, clusterId: context.clusterId },
          from === "denied" ? "the KMS opens the master secret again: serving keys" : "master secret unwrapped by the KMS",
        );
      }
    } finally {
      plain.fill(0);
    }
  }

  private deny(err: KekDeniedError): void {
    const was = this.state;
    this.secret = undefined;
    this.setState("denied");
    if (was !== "denied") {
      this.o.logger.error(
        { kms: this.o.backend.endpoint, keyId: this.envelope.keyId, err: err.message },
        was === "serving" ? "the KMS denied the master secret: dropped it, no keys are served" : "the KMS denied the master secret: no keys are served",
      );
    }
  }

  private async statusTick(): Promise<void> {
    await this.checkFile();
    const { backend, metrics, logger } = this.o;
    let status;
    try {
      status = await backend.status();
      metrics.request("status", "ok");
    } catch (err) {
      metrics.request("status", err instanceof KekDeniedError ? "denied" : "unavailable");
      this.markUnreachable((err as Error).message);
      return;
    }
    this.markReachable();
    this.kms.keyId = status.keyId;
    if (status.healthy !== this.kms.healthy) {
      this.kms.healthy = status.healthy;
      this.kms.since = new Date();
      this.kms.problem = status.healthy ? undefined : `Status healthz: ${status.healthz}`;
      if (status.healthy) logger.info({ kms: backend.endpoint }, "KMS healthy again");
      else logger.warn({ kms: backend.endpoint, healthz: status.healthz }, "KMS reports itself unhealthy");
    }
    metrics.setUp(this.kms.reachable && this.kms.healthy);
    const stale = status.keyId !== "" && status.keyId !== this.envelope.keyId;
    if (stale !== this.stale) {
      this.stale = stale;
      metrics.setStale(stale);
      if (stale) {
        logger.warn(
          { kms: backend.endpoint, wrappedKeyId: this.envelope.keyId, currentKeyId: status.keyId },
          "the KMS key rotated: the master secret is wrapped under an older key; run `cloak keys rewrap`",
        );
      } else {
        logger.info({ kms: backend.endpoint, keyId: status.keyId }, "the wrapped master secret is current");
      }
    }
  }

  /** A rewrap replaced the file: adopt the new blob once it proves to hold the same secret. */
  private async checkFile(): Promise<void> {
    let text;
    try {
      text = await readEnvelopeFile(this.o.wrappedFile);
    } catch (err) {
      this.noteFileProblem(`${(err as Error).message}; using the blob read before`);
      return;
    }
    if (text === this.fileText) {
      this.fileProblem = undefined;
      return;
    }
    let next: Envelope;
    try {
      next = parseEnvelope(text, this.o.wrappedFile);
    } catch (err) {
      this.noteFileProblem(`${(err as Error).message}; using the blob read before`);
      return;
    }
    if (this.fingerprint) {
      try {
        const plain = await unwrapSecret(this.o.backend, this.o.context, next);
        try {
          if (!timingSafeEqual(fingerprintOf(masterKeyObject(plain)), this.fingerprint)) {
            this.noteFileProblem("it now holds a different master secret than the one in use: refused (every volume's key would change); using the blob read before");
            this.fileText = text;
            return;
          }
        } finally {
          plain.fill(0);
        }
      } catch (err) {
        if (err instanceof KekUnavailableError) return; // try again at the next tick
        this.noteFileProblem(`the new blob is refused: ${(err as Error).message}; using the blob read before`);
        this.fileText = text;
        return;
      }
    }
    const previous = this.envelope.keyId;
    this.envelope = next;
    this.fileText = text;
    this.fileProblem = undefined;
    this.o.logger.info({ file: this.o.wrappedFile, previousKeyId: previous, keyId: next.keyId }, "using the rewrapped master secret");
  }

  private noteFileProblem(problem: string): void {
    if (problem !== this.fileProblem) this.o.logger.error({ file: this.o.wrappedFile }, problem);
    this.fileProblem = problem;
  }

  private noteFailure(err: unknown): void {
    this.lastFailure = (err as Error).message;
    if (err instanceof KekUnavailableError) this.markUnreachable(this.lastFailure);
  }

  private markUnreachable(problem: string): void {
    this.kms.problem = problem;
    this.o.metrics.setUp(false);
    if (!this.kms.reachable) return;
    this.kms.reachable = false;
    this.kms.since = new Date();
    if (this.state === "serving") {
      this.o.logger.warn({ kms: this.o.backend.endpoint, err: problem }, "KMS unreachable: serving keys from the master secret in memory");
    }
  }

  private markReachable(): void {
    if (this.kms.reachable) return;
    this.kms.reachable = true;
    this.kms.since = new Date();
    this.kms.problem = undefined;
    this.o.metrics.setUp(this.kms.healthy);
    this.o.logger.info({ kms: this.o.backend.endpoint }, "KMS reachable again");
  }

  private setState(state: MasterSecretState): void {
    if (state === this.state) return;
    const wasServing = this.state === "serving";
    this.state = state;
    this.o.metrics.setState(state);
    if (wasServing !== (state === "serving")) for (const l of this.listeners) l(state === "serving");
  }
}

async function readEnvelopeFile(path: string): Promise<string> {
  // The same checks as a plain secret's (regular file, not world-readable): the blob is not
  // secret, but a Secret mounted 0644 is a mistake worth refusing the same way.
  const bytes = await readKeyMaterial(path, "wrapped master secret");
  try {
    return bytes.toString("utf8");
  } finally {
    bytes.fill(0);
  }
}

function fingerprintOf(key: KeyObject): Buffer {
  return createHmac("sha256", key).update("cloak master secret fingerprint").digest();
}
