import type { Logger } from "../log.js";
import { isKubeStatus, KubeApiError, type KubeApi, type WatchEvent } from "./client.js";

/**
 * List + watch of one resource, keeping only a projection of each object (client-go's
 * reflector, in small): paged lists (500 a page, so a large cluster's objects are never in
 * memory at once), watches from the list's resourceVersion with bookmarks, a fresh list on
 * 410 Gone or any failure, exponential backoff while the API server is away. Whoever consumes
 * it keeps acting on the last good state meanwhile.
 */

/** What receives the projected objects. Keys are `namespace/name` (or `name` for cluster-scoped). */
export interface ReflectorSink<P> {
  /** The whole set after a (re-)list. */
  replace(items: Map<string, P>): void;
  upsert(key: string, item: P): void;
  remove(key: string): void;
}

export interface ReflectorOptions<P> {
  readonly api: KubeApi;
  /** The collection, e.g. `/api/v1/pods`. */
  readonly path: string;
  readonly fieldSelector?: string;
  readonly labelSelector?: string;
  /** What is kept of an object; undefined drops it (and removes an earlier version). */
  readonly project: (object: Record<string, unknown>) => P | undefined;
  readonly sink: ReflectorSink<P>;
  readonly logger: Logger;
  readonly pageSize?: number;
  readonly minBackoffMs?: number;
  readonly maxBackoffMs?: number;
  /** Told of each failure (metrics); the reflector keeps retrying. */
  readonly onError?: (err: unknown) => void;
}

export const LIST_PAGE_SIZE = 500;

export class Reflector<P> {
  private resourceVersion: string | undefined;
  private stopped = false;
  private abort = new AbortController();
  private loop: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  private backoffMs: number;
  private resolveSynced!: () => void;
  /** Resolves after the first complete list. */
  readonly synced: Promise<void>;
  isSynced = false;

  constructor(private readonly o: ReflectorOptions<P>) {
    this.backoffMs = o.minBackoffMs ?? 250;
    this.synced = new Promise((resolve) => (this.resolveSynced = resolve));
  }

  start(): void {
    this.loop ??= this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.abort.abort();
    this.wake?.();
    await this.loop;
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      try {
        if (this.resourceVersion === undefined) await this.list();
        await this.watchOnce();
        this.backoffMs = this.o.minBackoffMs ?? 250;
      } catch (err) {
        if (this.stopped) break;
        if (isKubeStatus(err, 410)) {
          this.o.logger.info({ resource: this.o.path }, "watch expired (410 Gone); listing again");
          this.resourceVersion = undefined;
          continue;
        }
        this.o.onError?.(err);
        this.o.logger.warn({ resource: this.o.path, err: (err as Error).message, retryMs: this.backoffMs }, "list/watch failed; keeping the last known state");
        this.resourceVersion = undefined;
        await this.sleep(this.backoffMs);
        this.backoffMs = Math.min(this.backoffMs * 2, this.o.maxBackoffMs ?? 10_000);
      }
    }
  }

  private query(): Record<string, string> {
    return {
      ...(this.o.fieldSelector ? { fieldSelector: this.o.fieldSelector } : {}),
      ...(this.o.labelSelector ? { labelSelector: this.o.labelSelector } : {}),
    };
  }

  private async list(): Promise<void> {
    const items = new Map<string, P>();
    let continueToken: string | undefined;
    let resourceVersion: string;
    do {
      const page = await this.o.api.listPage(this.o.path, {
        limit: this.o.pageSize ?? LIST_PAGE_SIZE,
        continueToken,
        query: this.query(),
        signal: this.abort.signal,
      });
      for (const object of page.items) {
        const projected = this.o.project(object);
        if (projected !== undefined) items.set(objectKey(object), projected);
      }
      continueToken = page.continueToken;
      resourceVersion = page.resourceVersion;
    } while (continueToken !== undefined && !this.stopped);
    if (this.stopped) return;
    this.o.sink.replace(items);
    this.resourceVersion = resourceVersion;
    if (!this.isSynced) {
      this.isSynced = true;
      this.resolveSynced();
    }
  }

  private async watchOnce(): Promise<void> {
    if (this.stopped) return;
    let failure: unknown;
    await this.o.api.watch(
      this.o.path,
      {
        query: { ...this.query(), resourceVersion: this.resourceVersion, allowWatchBookmarks: true, timeoutSeconds: 240 + Math.floor(Math.random() * 60) },
        signal: this.abort.signal,
      },
      (event: WatchEvent) => {
        if (event.type === "ERROR") {
          const status = event.object as { code?: number; reason?: string; message?: string };
          failure = new KubeApiError(status.code ?? 500, status.reason ?? "", `watch ${this.o.path}: ${status.message ?? "error"}`);
          return;
        }
        const rv = (event.object["metadata"] as { resourceVersion?: string } | undefined)?.resourceVersion;
        if (event.type !== "BOOKMARK") {
          const key = objectKey(event.object);
          const projected = event.type === "DELETED" ? undefined : this.o.project(event.object);
          if (projected === undefined) this.o.sink.remove(key);
          else this.o.sink.upsert(key, projected);
        }
        if (rv) this.resourceVersion = rv;
      },
    );
    if (failure) throw failure;
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }
}

export function objectKey(object: Record<string, unknown>): string {
  const metadata = (object["metadata"] ?? {}) as { name?: string; namespace?: string };
  return metadata.namespace ? `${metadata.namespace}/${metadata.name ?? ""}` : (metadata.name ?? "");
}
