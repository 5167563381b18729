import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { createLogger } from "../../lib/log.js";
import { runChecks, startHealthServer, type HealthCheck } from "./health-server.js";

const pass = (name: string): HealthCheck => ({ name, check: () => Promise.resolve() });
const fail = (name: string, why: string): HealthCheck => ({ name, check: () => Promise.reject(new Error(why)) });
const hang = (name: string): HealthCheck => ({ name, check: () => new Promise(() => undefined) });

describe("runChecks", () => {
  it("lists every check, kube-apiserver style", async () => {
    expect(await runChecks([pass("grpc"), pass("key-source")], 1_000)).toEqual({ ok: true, text: "[+]grpc ok\n[+]key-source ok\nok\n" });
    expect(await runChecks([pass("grpc"), fail("key-source", "key service\ndown")], 1_000)).toEqual({
      ok: false,
      text: "[+]grpc ok\n[-]key-source failed: key service down\ncheck failed\n",
    });
  });

  it("fails a check that does not answer in time, even one that ignores its signal", async () => {
    const started = Date.now();
    expect(await runChecks([hang("grpc")], 50)).toEqual({ ok: false, text: "[-]grpc failed: no answer within 50 ms\ncheck failed\n" });
    expect(Date.now() - started).toBeLessThan(5_000);
  });
});

describe("the health server", () => {
  it("keeps liveness and readiness apart and serves the registry", async () => {
    const registry = new Registry();
    const server = await startHealthServer({
      endpoint: { kind: "tcp", host: "127.0.0.1", port: 0 },
      liveness: [pass("grpc")],
      readiness: [pass("grpc"), fail("key-source", "down")],
      registry,
      log: createLogger({ component: "test", level: "silent" }),
    });
    try {
      const get = async (path: string) => {
        const r = await fetch(`http://127.0.0.1:${server.port}${path}`);
        return [r.status, await r.text()];
      };
      expect(await get("/healthz")).toEqual([200, "[+]grpc ok\nok\n"]);
      expect(await get("/livez")).toEqual([200, "[+]grpc ok\nok\n"]);
      expect(await get("/readyz")).toEqual([503, "[+]grpc ok\n[-]key-source failed: down\ncheck failed\n"]);
      expect((await get("/metrics"))[0]).toBe(200);
      expect((await get("/"))[0]).toBe(404);
    } finally {
      await server.stop();
    }
  });
});
