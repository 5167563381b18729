import { CoreV1Api, Watch, type KubeConfig, type V1Node } from "@kubernetes/client-node";
import type { Logger } from "../lib/log.js";

/**
 * List + watch of Node objects that never gives up: on 410 Gone (or any failure) it lists
 * again, backing off while the API server is away. Whoever uses it keeps acting on the last
 * good set; nothing is forgotten just because the API server cannot be reached.
 *
 * It keeps only `project(node)` of each Node, never the object: a real Node carries its image
 * list and conditions (often tens of KB), which at thousands of nodes would be most of the
 * agent's memory. For the same reason it lists in pages, as client-go's reflector does, so
 * that a whole cluster's Node objects are never in memory at once.
 */

/** Nodes per list request: client-go's reflector default. */
export const LIST_PAGE_SIZE = 500;

export interface NodeWatchOptions<T> {
  readonly kubeConfig: KubeConfig;
  readonly logger: Logger;
  /** What is kept of each Node; called once per version of a Node object. */
  readonly project: (node: V1Node) => T;
  /** Called with the whole set after every (re-)list and after each watch event. */
  readonly onChange: (nodes: ReadonlyMap<string, T>, reason: string) => void;
  /** Called when the API server cannot be reached (for metrics); the watch keeps retrying. */
  readonly onError?: (err: unknown) => void;
  /** Nodes per list request; default LIST_PAGE_SIZE. */
  readonly pageSize?: number;
  readonly minBackoffMs?: number;
  readonly maxBackoffMs?: number;
}

export class NodeWatch<T> {
  private nodes = new Map<string, T>();
  private resourceVersion: string | undefined;
  private stopped = false;
  private abort: AbortController | undefined;
  private backoffMs: number;
  private wake: (() => void) | undefined;
  private loop: Promise<void> | undefined;
  private readonly api: CoreV1Api;
  private readonly watch: Watch;
  /** Set once a list has succeeded: until then, callers have nothing trustworthy. */
  synced = false;

  constructor(private readonly o: NodeWatchOptions<T>) {
    this.api = o.kubeConfig.makeApiClient(CoreV1Api);
    this.watch = new Watch(o.kubeConfig);
    this.backoffMs = o.minBackoffMs ?? 500;
  }

  start(): void {
    this.loop ??= this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.abort?.abort();
    this.wake?.();
    await this.loop;
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      try {
        if (this.resourceVersion === undefined) await this.list();
        await this.watchOnce();
        this.backoffMs = this.o.minBackoffMs ?? 500;
      } catch (err) {
        if (this.stopped) break;
        const status = (err as { statusCode?: number; code?: number }).statusCode ?? (err as { code?: number }).code;
        if (status === 410) {
          this.o.logger.info("node watch expired (410 Gone); listing again");
          this.resourceVersion = undefined;
          continue;
        }
        this.o.onError?.(err);
        this.o.logger.warn({ err: (err as Error).message, retryMs: this.backoffMs }, "node watch failed; keeping the last known nodes");
        // Relist after a failure: events may have been missed while disconnected.
        this.resourceVersion = undefined;
        await this.sleep(this.backoffMs);
        this.backoffMs = Math.min(this.backoffMs * 2, this.o.maxBackoffMs ?? 10_000);
      }
    }
  }

  private async list(): Promise<void> {
    const nodes = new Map<string, T>();
    let page: string | undefined;
    let resourceVersion: string;
    do {
      // An expired continue token answers 410 Gone, and run() then lists again from the start.
      const list = await this.api.listNode({ limit: this.o.pageSize ?? LIST_PAGE_SIZE, _continue: page });
      for (const n of list.items) nodes.set(n.metadata?.name ?? "", this.o.project(n));
      resourceVersion = list.metadata?.resourceVersion ?? "";
      page = list.metadata?._continue || undefined;
    } while (page !== undefined);
    this.nodes = nodes;
    this.resourceVersion = resourceVersion;
    this.synced = true;
    this.o.onChange(this.nodes, "list");
  }

  /** One watch request; resolves when the server ends it (timeout), rejects on failure. */
  private watchOnce(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let failed: unknown;
      const onEvent = (type: string, obj: V1Node & { code?: number }) => {
        if (type === "ERROR") {
          failed = Object.assign(new Error(`watch error ${obj.code ?? ""}`), { statusCode: obj.code });
          return;
        }
        const name = obj.metadata?.name ?? "";
        if (type === "BOOKMARK") {
          this.resourceVersion = obj.metadata?.resourceVersion ?? this.resourceVersion;
          return;
        }
        if (type === "DELETED") this.nodes.delete(name);
        else if (type === "ADDED" || type === "MODIFIED") this.nodes.set(name, this.o.project(obj));
        else return;
        this.resourceVersion = obj.metadata?.resourceVersion ?? this.resourceVersion;
        this.o.onChange(this.nodes, type.toLowerCase());
      };
      const onDone = (err: unknown) => {
        // client-node's own inactivity timeout: nothing went wrong, watch again from here.
        if (err && (err as { name?: string }).name !== "TimeoutError") reject(err);
        else if (failed) reject(failed);
        else resolve();
      };
      this.watch
        .watch(
          "/api/v1/nodes",
          { resourceVersion: this.resourceVersion, allowWatchBookmarks: true, timeoutSeconds: 240 },
          onEvent,
          onDone,
        )
        .then((controller) => {
          this.abort = controller;
          if (this.stopped) controller.abort();
        }, reject);
    });
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
