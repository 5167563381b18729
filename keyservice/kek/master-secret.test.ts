import { createHmac, randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Registry } from "prom-client";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { writeFileAtomic } from "../../lib/atomic-file.js";
import { UnavailableError } from "../../lib/errors.js";
import { createLogger } from "../../lib/log.js";
import { KekDeniedError, KekUnavailableError, type KekBackend, type WrappedKey } from "./backend.js";
import { formatEnvelope, MASTER_SECRET_PURPOSE } from "./envelope.js";
import { KmsMasterSecret } from "./master-secret.js";
import { KmsMetrics } from "./metrics.js";
import { wrapSecret } from "./wrap.js";

// The decisions of KMS mode against a stand-in KMS (an XOR "cipher" per key id): what happens
// when it is down at the start, goes away later, refuses, or rotates. The same paths run
// against a real KMS v2 plugin over SoftHSM2 in test/host/keyservice/kms-*.test.ts.

class FakeKms implements KekBackend {
  readonly name = "kmsv2";
  readonly endpoint = "unix:///fake.sock";
  current = "kek-1";
  down = false;
  healthz = "ok";
  readonly disabled = new Set<string>();
  private readonly keys = new Map<string, Buffer>([["kek-1", randomBytes(32)]]);

  rotate(id: string): void {
    this.keys.set(id, randomBytes(32));
    this.current = id;
  }
  private gate(): void {
    if (this.down) throw new KekUnavailableError("KMS Decrypt at unix:///fake.sock: UNAVAILABLE: connect ENOENT");
  }
  private xor(id: string, data: Buffer): Buffer {
    const key = this.keys.get(id);
    if (!key || this.disabled.has(id)) throw new KekDeniedError(`PERMISSION_DENIED: key ${id} is disabled`);
    return Buffer.from(data.map((b, i) => b ^ (key[i % key.length] ?? 0)));
  }
  status() {
    this.gate();
    return Promise.resolve({ healthy: this.healthz === "ok", healthz: this.healthz, keyId: this.current });
  }
  encrypt(plaintext: Buffer): Promise<WrappedKey> {
    this.gate();
    return Promise.resolve({ ciphertext: this.xor(this.current, plaintext), keyId: this.current, annotations: {} });
  }
  decrypt(wrapped: WrappedKey): Promise<Buffer> {
    this.gate();
    return Promise.resolve(this.xor(wrapped.keyId, wrapped.ciphertext));
  }
  closed = 0;
  close(): void {
    this.closed++;
  }
}

const context = { purpose: MASTER_SECRET_PURPOSE, clusterId: "test-cluster" };
const logger = createLogger({ component: "test", level: "silent" });
let dir: string;
let file: string;
let kms: FakeKms;
let secret: Buffer;
let registry: Registry;
const holders: KmsMasterSecret[] = [];

async function writeWrapped(s: Buffer, c = context): Promise<void> {
  await writeFileAtomic(file, formatEnvelope(await wrapSecret(kms, c, s)), { mode: 0o400 });
}

async function open(): Promise<KmsMasterSecret> {
  registry = new Registry();
  const holder = await KmsMasterSecret.open({
    backend: kms,
    context,
    wrappedFile: file,
    // Timers far away: the test drives the checks with checkNow/recheckNow.
    statusIntervalMs: 3_600_000,
    recheckIntervalMs: 3_600_000,
    maxRetryMs: 3_600_000,
    logger,
    metrics: new KmsMetrics(registry),
  });
  holders.push(holder);
  return holder;
}

const derive = (key: ReturnType<KmsMasterSecret["current"]>) => createHmac("sha256", key).update("probe").digest("hex");
const metric = async (name: string) => (await registry.getSingleMetricAsString(name)).split("\n").filter((l) => !l.startsWith("#"));

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "cloak-kek-"));
  file = join(dir, "master-secret.wrapped");
  kms = new FakeKms();
  secret = randomBytes(32);
  await writeWrapped(secret);
});

afterEach(async () => {
  for (const h of holders.splice(0)) h.close();
  await rm(dir, { recursive: true, force: true });
});

describe("the master secret under a KMS", () => {
  it("unwraps at start to the secret that was wrapped", async () => {
    const holder = await open();
    expect(holder.serving).toBe(true);
    expect(derive(holder.current())).toBe(createHmac("sha256", secret).update("probe").digest("hex"));
    expect(await metric("cloak_keyservice_master_secret_state")).toContain('cloak_keyservice_master_secret_state{state="serving"} 1');
  });

  it("starts without keys while the KMS is down, and serves once it answers", async () => {
    kms.down = true;
    const holder = await open();
    expect(holder.serving).toBe(false);
    expect(() => holder.current()).toThrow(UnavailableError);
    expect(() => holder.current()).toThrow(/not unwrapped.*UNAVAILABLE/);
    expect(holder.detail().join("\n")).toMatch(/not unwrapped yet; no keys are served[\s\S]*kms: UNREACHABLE/);
    const changes: boolean[] = [];
    holder.onChange((s) => changes.push(s));
    kms.down = false;
    await holder.recheckNow();
    expect(holder.serving).toBe(true);
    expect(changes).toEqual([true]);
  });

  it("keeps serving while the KMS goes away later, and says so", async () => {
    const holder = await open();
    kms.down = true;
    await holder.checkNow();
    await holder.recheckNow();
    expect(holder.serving).toBe(true);
    expect(() => holder.current()).not.toThrow();
    expect(holder.detail().join("\n")).toMatch(/kms: UNREACHABLE since .*\(serving from memory\)/);
    expect(await metric("cloak_keyservice_kms_up")).toEqual(["cloak_keyservice_kms_up 0"]);
    kms.down = false;
    await holder.checkNow();
    expect(await metric("cloak_keyservice_kms_up")).toEqual(["cloak_keyservice_kms_up 1"]);
  });

  it("reports a KMS that calls itself unhealthy, and keeps serving", async () => {
    const holder = await open();
    kms.healthz = "cannot reach the cloud KMS";
    await holder.checkNow();
    expect(holder.serving).toBe(true);
    expect(holder.detail().join("\n")).toMatch(/kms: unhealthy since .*: Status healthz: cannot reach the cloud KMS \(serving from memory\)/);
    expect(await metric("cloak_keyservice_kms_up")).toEqual(["cloak_keyservice_kms_up 0"]);
    kms.healthz = "ok";
    await holder.checkNow();
    expect(await metric("cloak_keyservice_kms_up")).toEqual(["cloak_keyservice_kms_up 1"]);
  });

  it("drops the secret when the KMS denies it on the re-check, and serves again when it allows it", async () => {
    const holder = await open();
    const changes: boolean[] = [];
    holder.onChange((s) => changes.push(s));
    kms.disabled.add("kek-1");
    await holder.recheckNow();
    expect(holder.serving).toBe(false);
    expect(() => holder.current()).toThrow(/the KMS refused the master secret \(PERMISSION_DENIED/);
    expect(holder.detail()[0]).toMatch(/DENIED by the KMS/);
    kms.disabled.delete("kek-1");
    await holder.recheckNow();
    expect(holder.serving).toBe(true);
    expect(changes).toEqual([false, true]);
  });

  it("reports a KMS that answers with a refusal as reachable: it is there, and says no", async () => {
    kms.down = true;
    const holder = await open();
    expect(holder.detail().join("\n")).toMatch(/kms: UNREACHABLE/);
    kms.down = false;
    kms.disabled.add("kek-1");
    await holder.recheckNow();
    expect(holder.serving).toBe(false);
    const detail = holder.detail().join("\n");
    expect(detail).toMatch(/DENIED by the KMS/);
    expect(detail).not.toMatch(/UNREACHABLE/);
    expect(await metric("cloak_keyservice_kms_up")).toEqual(["cloak_keyservice_kms_up 1"]);
  });

  it("closes the KMS client when the wrapped file cannot be used, as when the KMS refuses it", async () => {
    await writeFileAtomic(file, "a file of more than thirty-two bytes that is no envelope", { mode: 0o400 });
    await expect(open()).rejects.toThrow(/not a wrapped master secret/);
    expect(kms.closed).toBe(1);
    await rm(file);
    await expect(open()).rejects.toThrow(/cannot be read \(ENOENT\)/);
    expect(kms.closed).toBe(2);
    await writeWrapped(secret);
    kms.disabled.add("kek-1");
    await expect(open()).rejects.toThrow(KekDeniedError);
    expect(kms.closed).toBe(3);
  });

  it("refuses at start a blob the KMS denies, or one wrapped for another cluster", async () => {
    kms.disabled.add("kek-1");
    await expect(open()).rejects.toThrow(KekDeniedError);
    kms.disabled.clear();
    await writeWrapped(secret, { ...context, clusterId: "other-cluster" });
    await expect(open()).rejects.toThrow(/belongs to cluster "other-cluster", not to this cluster "test-cluster"/);
  });

  it("reports a rotated KEK as stale, and adopts a rewrapped blob that holds the same secret", async () => {
    const holder = await open();
    const before = derive(holder.current());
    kms.rotate("kek-2");
    await holder.checkNow();
    expect(await metric("cloak_keyservice_kms_wrapped_key_stale")).toEqual(["cloak_keyservice_kms_wrapped_key_stale 1"]);
    expect(holder.detail().join("\n")).toMatch(/wrapped under key kek-1, the KMS now encrypts with kek-2: run `cloak keys rewrap`/);
    await writeWrapped(secret);
    await holder.checkNow();
    expect(await metric("cloak_keyservice_kms_wrapped_key_stale")).toEqual(["cloak_keyservice_kms_wrapped_key_stale 0"]);
    // The old key may go now: the re-check opens the new blob.
    kms.disabled.add("kek-1");
    await holder.recheckNow();
    expect(holder.serving).toBe(true);
    expect(derive(holder.current())).toBe(before);
  });

  it("refuses a replaced blob that holds a different master secret, and keeps the one in use", async () => {
    const holder = await open();
    const before = derive(holder.current());
    await writeWrapped(randomBytes(32));
    await holder.checkNow();
    expect(holder.detail().join("\n")).toMatch(/holds a different master secret than the one in use: refused/);
    await holder.recheckNow();
    expect(holder.serving).toBe(true);
    expect(derive(holder.current())).toBe(before);
  });
});
