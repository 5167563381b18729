import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { UnavailableError } from "../../lib/errors.js";
import { createLogger } from "../../lib/log.js";
import type { KeySource } from "../keys/key-source.js";
import { KeySourceMonitor } from "./key-source-monitor.js";

function fakeKeys(): KeySource & { down: string | undefined } {
  return {
    kind: "fake",
    down: undefined,
    getKey: () => Promise.reject(new Error("not used")),
    probe() {
      return this.down === undefined ? Promise.resolve() : Promise.reject(new UnavailableError(this.down));
    },
    close: () => Promise.resolve(),
  };
}

function capturedLog(): { log: ReturnType<typeof createLogger>; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split("\n")) if (line) lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { log: createLogger({ component: "test", destination }), lines };
}

describe("KeySourceMonitor", () => {
  it("knows nothing before the first probe, then follows the source, logging each change once", async () => {
    const keys = fakeKeys();
    const { log, lines } = capturedLog();
    const gauge: boolean[] = [];
    let now = 1_000;
    const monitor = new KeySourceMonitor({ keys, log, onProbe: (r) => gauge.push(r), now: () => now });
    expect(monitor.current.ready).toBeUndefined();

    await monitor.probeOnce();
    expect(monitor.current).toEqual({ ready: true, since: 1_000 });

    keys.down = "key service 10.0.0.1:9000 does not answer";
    now = 2_000;
    await monitor.probeOnce();
    now = 3_000;
    keys.down = "key service 10.0.0.1:9000 is NOT_SERVING";
    await monitor.probeOnce();
    expect(monitor.current).toEqual({ ready: false, since: 2_000, error: "key service 10.0.0.1:9000 is NOT_SERVING" });

    keys.down = undefined;
    now = 7_500;
    await monitor.probeOnce();
    expect(monitor.current).toEqual({ ready: true, since: 7_500 });
    expect(gauge).toEqual([true, false, false, true]);
    expect(lines.map((l) => [l["msg"], l["downMs"]])).toEqual([
      ["key source ready", undefined],
      ["key source not ready: new volumes cannot be staged until it answers; staged volumes keep working", undefined],
      ["key source ready", 5_500],
    ]);
  });

  it("shares one probe between concurrent callers", async () => {
    const keys = fakeKeys();
    let probes = 0;
    const probe = keys.probe.bind(keys);
    keys.probe = (o) => {
      probes++;
      return probe(o);
    };
    const monitor = new KeySourceMonitor({ keys, log: createLogger({ component: "test", level: "silent" }) });
    await Promise.all([monitor.probeOnce(), monitor.probeOnce(), monitor.probeOnce()]);
    expect(probes).toBe(1);
  });

  it("probes on its interval until stopped", async () => {
    const keys = fakeKeys();
    let probes = 0;
    keys.probe = () => {
      probes++;
      return Promise.resolve();
    };
    const monitor = new KeySourceMonitor({ keys, log: createLogger({ component: "test", level: "silent" }), intervalMs: 20 });
    await monitor.start();
    await new Promise((r) => setTimeout(r, 200));
    await monitor.stop();
    const seen = probes;
    expect(seen).toBeGreaterThanOrEqual(3);
    await new Promise((r) => setTimeout(r, 100));
    expect(probes).toBe(seen);
  });
});
