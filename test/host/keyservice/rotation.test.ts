import { mkdir, mkdtemp, readFile, rename, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect } from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { KeySource } from "../../../csi/keys/key-source.js";
import { createKeyServiceKeySource } from "../../../csi/keys/keyservice-key-source.js";
import { PermissionDeniedError } from "../../../lib/errors.js";
import { createLogger } from "../../../lib/log.js";
import { initKeys, startKeyServiceHarness, type KeyServiceHarness } from "../../keyservice-harness/index.js";
import { TestPki } from "../../keyservice-harness/pki-fixtures.js";

/**
 * Rotation as Kubernetes does it: a Secret or ConfigMap volume holds `..2026_x/` directories,
 * `..data` points at the current one, and each file name is a symlink through `..data`. An
 * update writes a new directory and swaps `..data` with one rename.
 */
class ProjectedVolume {
  private generation = 0;
  constructor(readonly dir: string) {}

  async publish(files: Record<string, string | Buffer>): Promise<void> {
    const name = `..2026_${++this.generation}`;
    await mkdir(join(this.dir, name), { recursive: true });
    for (const [file, content] of Object.entries(files)) {
      await writeFile(join(this.dir, name, file), content, { mode: 0o400 });
      await symlink(join("..data", file), join(this.dir, file)).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== "EEXIST") throw err;
      });
    }
    await symlink(name, join(this.dir, "..data_tmp"));
    await rename(join(this.dir, "..data_tmp"), join(this.dir, "..data"));
  }
}

const logger = createLogger({ component: "test", level: "silent" });
let base: string;
let ks: KeyServiceHarness;
let pki: TestPki;
let tlsVolume: ProjectedVolume;
let allowVolume: ProjectedVolume;
let keys: KeySource;

beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), "cloak-ks-rotation-"));
  await initKeys(join(base, "keys"));
  pki = await TestPki.load(join(base, "pki"), join(base, "keys/ca/ca.crt"), join(base, "keys/ca/ca.key"));
  tlsVolume = new ProjectedVolume(join(base, "tls"));
  const first = await pki.server("first");
  await tlsVolume.publish({
    "tls.crt": await readFile(first.certFile),
    "tls.key": await readFile(first.keyFile),
    "ca.crt": await readFile(first.caFile),
  });
  allowVolume = new ProjectedVolume(join(base, "allow"));
  await allowVolume.publish({ "allow.txt": "# nobody extra yet\n" });
  ks = await startKeyServiceHarness({
    dir: base,
    serverTls: { certFile: join(base, "tls/tls.crt"), keyFile: join(base, "tls/tls.key"), caFile: join(base, "tls/ca.crt") },
    extraArgs: ["--allow-file", join(base, "allow/allow.txt")],
  });
  keys = await createKeyServiceKeySource({ target: ks.target, serverName: ks.serverName, ...ks.client, logger });
});

afterAll(async () => {
  await keys?.close();
  await ks?.cleanup();
  await rm(base, { recursive: true, force: true });
});

/** The serial number of the certificate a new connection is served. */
async function servedSerial(): Promise<string> {
  const socket = connect({
    host: "127.0.0.1",
    port: Number(ks.target.split(":")[1]),
    servername: "localhost",
    ca: await readFile(ks.client.caFile),
    cert: await readFile(ks.client.certFile),
    key: await readFile(ks.client.keyFile),
    ALPNProtocols: ["h2"],
  });
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once("secureConnect", resolve);
      socket.once("error", reject);
    });
    return socket.getPeerCertificate().serialNumber;
  } finally {
    socket.destroy();
  }
}

async function eventually<T>(fn: () => Promise<T>, accept: (value: T) => boolean, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (accept(value) || Date.now() > deadline) return value;
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe("rotation without a restart", () => {
  it("serves a new server certificate once ..data is swapped, and keeps serving through it", async () => {
    const pid = ks.pid();
    const before = await servedSerial();
    expect(await keys.getKey("vol-1", 32)).toHaveLength(32);
    const second = await pki.server("second");
    await tlsVolume.publish({
      "tls.crt": await readFile(second.certFile),
      "tls.key": await readFile(second.keyFile),
      "ca.crt": await readFile(second.caFile),
    });
    const after = await eventually(servedSerial, (serial) => serial !== before);
    expect(after).not.toBe(before);
    // Log lines are written in batches (at most 200 ms late).
    const logged = await eventually(
      () => Promise.resolve(ks.logLines().some((l) => l["msg"] === "TLS certificates reloaded" && String(l["serial"]) === after)),
      (seen) => seen,
    );
    expect(logged).toBe(true);
    // The node plugin's long-lived channel goes on working, and so do new connections.
    expect(await keys.getKey("vol-2", 32)).toHaveLength(32);
    expect(ks.pid()).toBe(pid);
  });

  it("keeps the certificates in force when an update is unusable", async () => {
    const current = await servedSerial();
    const third = await pki.server("third");
    const fourth = await pki.server("fourth");
    await tlsVolume.publish({
      "tls.crt": await readFile(third.certFile),
      "tls.key": await readFile(fourth.keyFile),
      "ca.crt": await readFile(third.caFile),
    });
    await eventually(
      () => Promise.resolve(ks.logLines().some((l) => String(l["msg"]).includes("unusable; keeping the previous certificates"))),
      (seen) => seen,
    );
    expect(ks.logLines().find((l) => String(l["msg"]).includes("unusable"))?.["err"]).toMatch(/does not belong to certificate/);
    expect(await servedSerial()).toBe(current);
    expect(await keys.getKey("vol-3", 32)).toHaveLength(32);
  });

  it("re-reads the allow-list file: a client is admitted once it is listed, and refused once it is not", async () => {
    const extra = await pki.client("extra", "spiffe://cloak/ns/backup/sa/restic");
    const extraKeys = await createKeyServiceKeySource({ target: ks.target, serverName: ks.serverName, ...extra, logger });
    try {
      await expect(extraKeys.getKey("vol-1", 32)).rejects.toThrow(PermissionDeniedError);
      await allowVolume.publish({ "allow.txt": "spiffe://cloak/ns/backup/sa/*\n" });
      const admitted = await eventually(
        () => extraKeys.getKey("vol-1", 32).then(() => true, () => false),
        (ok) => ok,
      );
      expect(admitted).toBe(true);
      await allowVolume.publish({ "allow.txt": "" });
      const refused = await eventually(
        () => extraKeys.getKey("vol-1", 32).then(() => false, (err: unknown) => err instanceof PermissionDeniedError),
        (denied) => denied,
      );
      expect(refused).toBe(true);
      // The command-line entry is not affected by the file.
      expect(await keys.getKey("vol-1", 32)).toHaveLength(32);
    } finally {
      await extraKeys.close();
    }
  });
});

