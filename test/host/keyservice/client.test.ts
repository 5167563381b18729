import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { KeySource } from "../../../csi/keys/key-source.js";
import { createFileKeySource } from "../../../csi/keys/file-key-source.js";
import { createKeyServiceKeySource } from "../../../csi/keys/keyservice-key-source.js";
import { deriveDataKey } from "../../../lib/data-key.js";
import { UnavailableError } from "../../../lib/errors.js";
import { createLogger } from "../../../lib/log.js";
import { startKeyServiceHarness, type KeyServiceHarness } from "../../keyservice-harness/index.js";

const logger = createLogger({ component: "test", level: "silent" });
let ks: KeyServiceHarness;
let keys: KeySource;

beforeAll(async () => {
  ks = await startKeyServiceHarness();
  keys = await createKeyServiceKeySource({
    target: ks.target,
    serverName: ks.serverName,
    ...ks.client,
    attempts: 3,
    initialBackoffMs: 200,
    callTimeoutMs: 1000,
    logger,
  });
});

afterAll(async () => {
  await keys?.close();
  await ks?.cleanup();
});

describe("the node plugin's key service client against the real service", () => {
  it("gets the same keys as the file key source over the same files", async () => {
    const id = "0d7ad1a3-6c43-4d0f-9b4e-6f1d9d3a1c55";
    const fromService = await keys.getKey(id, 32);
    const master = await readFile(join(ks.keysDir, "master-secret"));
    const salt = await readFile(join(ks.keysDir, "salt"));
    expect(fromService.equals(deriveDataKey(master, salt, id, 32))).toBe(true);
    const file = await createFileKeySource({ dir: ks.keysDir });
    try {
      expect((await file.getKey(id, 32)).equals(fromService)).toBe(true);
    } finally {
      await file.close();
    }
    await keys.probe();
  });

  it("fails with Unavailable after bounded retries while the service is stopped, and recovers when it is back", async () => {
    await ks.stop();
    const started = Date.now();
    const err = await keys.getKey("vol-down", 32).catch((e: unknown) => e);
    const elapsed = Date.now() - started;
    expect(err).toBeInstanceOf(UnavailableError);
    expect((err as Error).message).toMatch(/key service 127\.0\.0\.1:\d+ is unavailable \(.*\) after 3 attempts; volumes cannot be staged until it answers/);
    // Two backoffs: 100..200 ms, then 200..400 ms; and not much more (the refusals are fast).
    expect(elapsed).toBeGreaterThanOrEqual(300);
    expect(elapsed).toBeLessThan(5000);
    await expect(keys.probe()).rejects.toThrow(UnavailableError);

    await ks.start();
    // The same client (one long-lived channel) reconnects by itself; its reconnect backoff is
    // capped at 5 s, so within a few calls the key comes.
    const backStarted = Date.now();
    let key: Buffer | undefined;
    while (!key && Date.now() - backStarted < 15_000) {
      key = await keys.getKey("vol-back", 32).catch(() => undefined);
    }
    expect(key).toHaveLength(32);
    await keys.probe();
  });
});
