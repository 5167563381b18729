import { describe, expect, it } from "vitest";
import { createLogger } from "../log.js";
import { KubeApiError, type KubeClient, type ListMeta, type Query, type WatchEvent } from "./client.js";
import { Reflector, type ReflectorSink } from "./reflector.js";

interface Page {
  readonly items: unknown[];
  readonly resourceVersion: string;
  readonly continue?: string;
}

/** A client that serves scripted lists and watches, recording what was asked. */
function scriptedClient(script: { lists: (() => Page)[]; watches: ((emit: (e: WatchEvent) => void, signal: AbortSignal | undefined) => Promise<void>)[] }) {
  const asked: string[] = [];
  const client = {
    async list(_path: string, query: Query, onItem: (item: unknown) => void, o: { signal?: AbortSignal }): Promise<ListMeta> {
      asked.push(`list ${String(query["continue"] ?? "")}${query["fieldSelector"] ? ` ${String(query["fieldSelector"])}` : ""}`);
      const next = script.lists.shift();
      if (!next) return untilAborted(o.signal);
      await Promise.resolve();
      const page = next();
      for (const item of page.items) onItem(item);
      return { resourceVersion: page.resourceVersion, continue: page.continue, items: page.items.length };
    },
    watch(_path: string, query: Query, onEvent: (e: WatchEvent) => void, o: { signal?: AbortSignal }): Promise<void> {
      asked.push(`watch ${String(query["resourceVersion"])}`);
      const next = script.watches.shift();
      return next ? next(onEvent, o.signal) : untilAborted(o.signal);
    },
  };
  return { client: client as unknown as KubeClient, asked };
}

/** What a request does when the script has nothing more: hang until the reflector stops. */
function untilAborted<T>(signal: AbortSignal | undefined): Promise<T> {
  return new Promise<T>((_, reject) => signal?.addEventListener("abort", () => reject(new Error("aborted")), { once: true }));
}

const obj = (name: string, rv: string, extra: Record<string, unknown> = {}) => ({ metadata: { name, namespace: "ns", resourceVersion: rv }, ...extra });
const logger = createLogger({ component: "test", level: "silent" });
const nameOf = (o: unknown): string => (o as { metadata: { name: string } }).metadata.name;

function recordingSink() {
  const state = new Map<string, string>();
  const events: string[] = [];
  const sink: ReflectorSink<string> = {
    replace: (items) => {
      state.clear();
      for (const [k, v] of items) state.set(k, v);
      events.push(`replace ${[...items.keys()].join(",")}`);
    },
    upsert: (k, v, reason) => {
      state.set(k, v);
      events.push(`${reason ?? "?"} ${k}`);
    },
    remove: (k) => {
      state.delete(k);
      events.push(`remove ${k}`);
    },
  };
  return { sink, state, events };
}

const tick = (ms = 20) => new Promise((resolve) => setTimeout(resolve, ms));

describe("the reflector's sink", () => {
  it("lists in pages with the selector, watches from the list's version, drops what it does not project, lists again on 410 Gone", async () => {
    let endSecondWatch!: () => void;
    const { client, asked } = scriptedClient({
      lists: [
        () => ({ items: [obj("a", "1"), obj("skip", "1")], resourceVersion: "", continue: "c1" }),
        () => ({ items: [obj("b", "2")], resourceVersion: "10" }),
        () => ({ items: [obj("c", "30")], resourceVersion: "30" }),
      ],
      watches: [
        (emit) => {
          emit({ type: "ADDED", object: obj("d", "11") });
          emit({ type: "MODIFIED", object: obj("a", "12", { dropped: true }) });
          emit({ type: "BOOKMARK", object: { metadata: { resourceVersion: "15" } } });
          emit({ type: "DELETED", object: obj("b", "16") });
          return Promise.resolve();
        },
        (emit) => {
          emit({ type: "ERROR", object: { code: 410, reason: "Expired", message: "too old resource version" } });
          return new Promise<void>((resolve) => (endSecondWatch = resolve));
        },
      ],
    });
    const { sink, state, events } = recordingSink();
    const r = new Reflector<string>({
      client,
      path: "/api/v1/pods",
      fieldSelector: "spec.nodeName!=",
      project: (o) => (nameOf(o) === "skip" || (o as { dropped?: boolean }).dropped ? undefined : nameOf(o)),
      sink,
      logger,
    });
    r.start();
    await r.whenSynced();
    expect(r.synced).toBe(true);
    await tick();
    endSecondWatch?.();
    await tick();
    expect(asked.slice(0, 5)).toEqual(["list  spec.nodeName!=", "list c1 spec.nodeName!=", "watch 10", "watch 16", "list  spec.nodeName!="]);
    expect(events).toEqual(["replace ns/a,ns/b", "added ns/d", "remove ns/a", "remove ns/b", "replace ns/c"]);
    expect([...state.keys()]).toEqual(["ns/c"]);
    await r.stop();
  });

  it("keeps the last state through failures and retries with backoff", async () => {
    const { client, asked } = scriptedClient({
      lists: [
        () => ({ items: [obj("a", "1")], resourceVersion: "1" }),
        () => {
          throw new KubeApiError("down", 503, "ServiceUnavailable");
        },
        () => ({ items: [obj("a", "5"), obj("b", "5")], resourceVersion: "5" }),
      ],
      watches: [() => Promise.reject(new Error("connection reset"))],
    });
    const { sink, state } = recordingSink();
    const errors: unknown[] = [];
    const r = new Reflector<string>({ client, path: "/x", project: nameOf, sink, logger, minBackoffMs: 5, onError: (e) => errors.push(e) });
    r.start();
    await r.whenSynced();
    for (let i = 0; i < 50 && state.size < 2; i++) await tick(10);
    expect([...state.keys()]).toEqual(["ns/a", "ns/b"]);
    expect(errors.map((e) => (e as Error).message)).toEqual(["connection reset", "down"]);
    expect(asked.filter((a) => a.startsWith("list")).length).toBe(3);
    await r.stop();
  });

  it("hands onChange the whole set after every change", async () => {
    const { client } = scriptedClient({
      lists: [() => ({ items: [obj("a", "1")], resourceVersion: "1" })],
      watches: [
        (emit, signal) => {
          emit({ type: "ADDED", object: obj("b", "2") });
          emit({ type: "DELETED", object: obj("a", "3") });
          return untilAborted(signal);
        },
      ],
    });
    const seen: string[] = [];
    const r = new Reflector<string>({ client, path: "/x", project: nameOf, logger, onChange: (all, reason) => seen.push(`${reason} ${[...all.keys()].join(",")}`) });
    r.start();
    await r.whenSynced();
    await tick();
    expect(seen).toEqual(["list ns/a", "added ns/a,ns/b", "deleted ns/b"]);
    await r.stop();
  });
});
