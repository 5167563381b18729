import type { Logger } from "../log.js";
import { KubeApiError, watchError, type KubeClient, type WatchEvent } from "./client.js";
import type { KubeObject } from "./types.js";

/**
 * List + watch of one kind of object that never gives up, as client-go's reflector: the list
 * is paged, the watch asks for bookmarks (so that a reconnect resumes from a recent
 * resourceVersion instead of relisting), a 410 Gone (an expired resourceVersion or continue
 * token) lists again at once, and any other failure lists again after a backoff that doubles
 * up to a limit. Whoever uses it keeps acting on the last good set: nothing is forgotten just
 * because the API server cannot be reached.
 *
 * It keeps only `project(object)` of each object, never the object: a real Node carries its
 * image list, conditions and managed fields (often tens of KB), which at thousands of nodes
 * would be most of a component's memory; and the list is parsed item by item as it arrives
 * (client.ts), so a whole page of objects is never in memory at once either.
 */

/** Objects per list request: client-go's reflector default. */
export const LIST_PAGE_SIZE = 500;

/**
 * What is told of each change, one at a time: keys are `namespace/name` (`name` for a
 * cluster-scoped object). For a consumer that keeps its own indexed maps (the key service's
 * authorisation caches), so that the reflector does not hold a second map of every object.
 */
export interface ReflectorSink<T> {
  /** The whole set, after a (re-)list. */
  replace(objects: Map<string, T>): void;
  /** `reason`: which watch event it was (the reflector always says; callers elsewhere may not). */
  upsert(key: string, object: T, reason?: "added" | "modified"): void;
  remove(key: string): void;
}

/** Either `onChange` (the whole set after every change) or `sink` (each change). */
type ReflectorOutput<T> =
  | {
      /** Called with the whole set after every (re-)list and after each watch event. */
      readonly onChange: (objects: ReadonlyMap<string, T>, reason: string) => void;
      readonly sink?: never;
    }
  | { readonly sink: ReflectorSink<T>; readonly onChange?: never };

export type ReflectorOptions<T> = ReflectorOutput<T> & {
  readonly client: KubeClient;
  /** The collection, e.g. "/api/v1/nodes". */
  readonly path: string;
  readonly fieldSelector?: string;
  readonly labelSelector?: string;
  readonly logger: Logger;
  /**
   * What is kept of each object; called once per version of an object. undefined: the object
   * is not kept (and a version kept earlier is removed).
   */
  readonly project: (object: KubeObject) => T | undefined;
  /** Called when the API server cannot be reached (for metrics); the reflector keeps retrying. */
  readonly onError?: (err: unknown) => void;
  /** Objects per list request; default LIST_PAGE_SIZE. */
  readonly pageSize?: number;
  readonly minBackoffMs?: number;
  readonly maxBackoffMs?: number;
  /** How long the server keeps one watch request open; default 240 s (client-go: 5–10 min). */
  readonly watchSeconds?: number;
};

export class Reflector<T> {
  private readonly sink: ReflectorSink<T>;
  private resourceVersion: string | undefined;
  private stopped = false;
  private readonly abort = new AbortController();
  private backoffMs: number;
  private wake: (() => void) | undefined;
  private loop: Promise<void> | undefined;
  /** Set once a list has succeeded: until then, callers have nothing trustworthy. */
  synced = false;
  private readonly firstList: Promise<void>;
  private listed: () => void = () => undefined;

  constructor(private readonly o: ReflectorOptions<T>) {
    this.backoffMs = o.minBackoffMs ?? 500;
    this.sink = o.sink ?? wholeSet(o.onChange);
    this.firstList = new Promise((resolve) => (this.listed = resolve));
  }

  /** Resolves after the first complete list (never, while the API server cannot be reached). */
  whenSynced(): Promise<void> {
    return this.firstList;
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
        const started = Date.now();
        const events = await this.watchOnce();
        // A server that ends every watch at once would otherwise be asked again in a tight loop.
        if (events === 0 && Date.now() - started < 1_000) await this.sleep(this.backoffMs);
        else this.backoffMs = this.o.minBackoffMs ?? 500;
      } catch (err) {
        if (this.stopped) break;
        if (err instanceof KubeApiError && err.code === 410) {
          this.o.logger.info({ path: this.o.path, err: err.message }, "watch expired (410 Gone); listing again");
          this.resourceVersion = undefined;
          continue;
        }
        this.o.onError?.(err);
        this.o.logger.warn({ path: this.o.path, err: (err as Error).message, retryMs: this.backoffMs }, "list/watch failed; keeping the last known objects");
        // Relist after a failure: events may have been missed while disconnected.
        this.resourceVersion = undefined;
        await this.sleep(this.backoffMs);
        this.backoffMs = Math.min(this.backoffMs * 2, this.o.maxBackoffMs ?? 10_000);
      }
    }
  }

  private async list(): Promise<void> {
    const objects = new Map<string, T>();
    let page: string | undefined;
    let resourceVersion: string;
    do {
      // An expired continue token answers 410 Gone, and run() then lists again from the start.
      const meta = await this.o.client.list(
        this.o.path,
        { ...this.selectors(), limit: this.o.pageSize ?? LIST_PAGE_SIZE, continue: page },
        (item) => {
          const object = item as KubeObject;
          const kept = this.o.project(object);
          if (kept !== undefined) objects.set(keyOf(object), kept);
        },
        { signal: this.abort.signal },
      );
      resourceVersion = meta.resourceVersion;
      page = meta.continue;
    } while (page !== undefined);
    this.sink.replace(objects);
    this.resourceVersion = resourceVersion;
    this.synced = true;
    this.listed();
  }

  private selectors(): { fieldSelector?: string; labelSelector?: string } {
    return { fieldSelector: this.o.fieldSelector, labelSelector: this.o.labelSelector };
  }

  /** One watch request; resolves with the number of events when the server ends it. */
  private async watchOnce(): Promise<number> {
    let events = 0;
    const seconds = this.o.watchSeconds ?? 240;
    await this.o.client.watch(
      this.o.path,
      { ...this.selectors(), resourceVersion: this.resourceVersion, allowWatchBookmarks: true, timeoutSeconds: seconds },
      (e: WatchEvent) => {
        events++;
        if (e.type === "ERROR") throw watchError(e.object);
        const object = (e.object ?? {}) as KubeObject;
        const rv = object.metadata?.resourceVersion;
        if (e.type === "BOOKMARK") {
          if (rv) this.resourceVersion = rv;
          return;
        }
        if (e.type !== "DELETED" && e.type !== "ADDED" && e.type !== "MODIFIED") return;
        const kept = e.type === "DELETED" ? undefined : this.o.project(object);
        if (kept === undefined) this.sink.remove(keyOf(object));
        else this.sink.upsert(keyOf(object), kept, e.type === "ADDED" ? "added" : "modified");
        if (rv) this.resourceVersion = rv;
      },
      // The server ends the request after `seconds`; silence well past that is a dead connection.
      { signal: this.abort.signal, timeoutMs: (seconds + 60) * 1000 },
    );
    return events;
  }

  private sleep(ms: number): Promise<void> {
    if (this.stopped) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }
}

function keyOf(o: KubeObject): string {
  const m = o.metadata ?? {};
  return m.namespace ? `${m.namespace}/${m.name ?? ""}` : (m.name ?? "");
}

/** The sink behind `onChange`: one map of the whole set, handed over after every change. */
function wholeSet<T>(onChange: (objects: ReadonlyMap<string, T>, reason: string) => void): ReflectorSink<T> {
  let objects = new Map<string, T>();
  return {
    replace(all) {
      objects = all;
      onChange(objects, "list");
    },
    upsert(key, object, reason) {
      objects.set(key, object);
      onChange(objects, reason ?? "modified");
    },
    remove(key) {
      objects.delete(key);
      onChange(objects, "deleted");
    },
  };
}
