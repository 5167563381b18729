import { describe, expect, it } from "vitest";
import { createLogger } from "../log.js";
import { KubeApiError, type KubeApi, type ListPage, type WatchEvent } from "./client.js";
import { Reflector, type ReflectorSink } from "./reflector.js";

/** An API that serves scripted lists and watches, recording what was asked. */
function scriptedApi(script: { lists: (() => ListPage)[]; watches: ((emit: (e: WatchEvent) => void) => Promise<void>)[] }) {
  const asked: string[] = [];
  const api = {
    listPage(_path: string, o: { continueToken?: string; limit: number; signal?: AbortSignal }) {
      asked.push(`list ${o.continueToken ?? ""}`);
      const next = script.lists.shift();
      if (!next) return untilAborted(o.signal);
      return Promise.resolve().then(next);
    },
    watch(_path: string, o: { query?: Record<string, unknown>; signal?: AbortSignal }, onEvent: (e: WatchEvent) => void) {
      asked.push(`watch ${String(o.query?.["resourceVersion"])}`);
      const next = script.watches.shift();
      return next ? next(onEvent) : untilAborted(o.signal);
    },
  };
  return { api: api as unknown as KubeApi, asked };
}

/** What a request does when the script has nothing more: hang until the reflector stops. */
function untilAborted<T>(signal: AbortSignal | undefined): Promise<T> {
  return new Promise<T>((_, reject) => signal?.addEventListener("abort", () => reject(new Error("aborted")), { once: true }));
}

const obj = (name: string, rv: string, extra: Record<string, unknown> = {}) => ({ metadata: { name, namespace: "ns", resourceVersion: rv }, ...extra });

function recordingSink() {
  const state = new Map<string, string>();
  const events: string[] = [];
  const sink: ReflectorSink<string> = {
    replace: (items) => {
      state.clear();
      for (const [k, v] of items) state.set(k, v);
      events.push(`replace ${[...items.keys()].join(",")}`);
    },
    upsert: (k, v) => {
      state.set(k, v);
      events.push(`upsert ${k}`);
    },
    remove: (k) => {
      state.delete(k);
      events.push(`remove ${k}`);
    },
  };
  return { sink, state, events };
}

describe("the reflector", () => {
  it("lists in pages, watches from the list's version, projects, and lists again on 410 Gone", async () => {
    let endSecondWatch!: () => void;
    const { api, asked } = scriptedApi({
      lists: [
        () => ({ items: [obj("a", "1"), obj("skip", "1")], resourceVersion: "", continueToken: "c1" }),
        () => ({ items: [obj("b", "2")], resourceVersion: "10", continueToken: undefined }),
        () => ({ items: [obj("c", "30")], resourceVersion: "30", continueToken: undefined }),
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
          return new Promise<void>((resolve) => (endSecondWatch = resolve)).then(() => undefined);
        },
      ],
    });
    const { sink, state, events } = recordingSink();
    const r = new Reflector<string>({
      api,
      path: "/api/v1/pods",
      project: (o) => {
        const m = o["metadata"] as { name: string };
        return m.name === "skip" || o["dropped"] ? undefined : m.name;
      },
      sink,
      logger: createLogger({ component: "test", level: "silent" }),
    });
    r.start();
    await r.synced;
    await new Promise((resolve) => setTimeout(resolve, 20));
    endSecondWatch();
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(asked.slice(0, 5)).toEqual(["list ", "list c1", "watch 10", "watch 16", "list "]);
    expect(events).toEqual(["replace ns/a,ns/b", "upsert ns/d", "remove ns/a", "remove ns/b", "replace ns/c"]);
    expect([...state.keys()]).toEqual(["ns/c"]);
    await r.stop();
  });

  it("keeps the last state through failures and retries with backoff", async () => {
    const { api, asked } = scriptedApi({
      lists: [
        () => ({ items: [obj("a", "1")], resourceVersion: "1", continueToken: undefined }),
        () => {
          throw new KubeApiError(503, "ServiceUnavailable", "down");
        },
        () => ({ items: [obj("a", "5"), obj("b", "5")], resourceVersion: "5", continueToken: undefined }),
      ],
      watches: [() => Promise.reject(new Error("connection reset"))],
    });
    const { sink, state } = recordingSink();
    const errors: unknown[] = [];
    const r = new Reflector<string>({ api, path: "/x", project: (o) => (o["metadata"] as { name: string }).name, sink, logger: createLogger({ component: "test", level: "silent" }), minBackoffMs: 5, onError: (e) => errors.push(e) });
    r.start();
    await r.synced;
    for (let i = 0; i < 50 && state.size < 2; i++) await new Promise((resolve) => setTimeout(resolve, 10));
    expect([...state.keys()]).toEqual(["ns/a", "ns/b"]);
    expect(errors.map((e) => (e as Error).message)).toEqual(["connection reset", "down"]);
    expect(asked.filter((a) => a.startsWith("list")).length).toBe(3);
    await r.stop();
  });
});
