import { mkdtemp, readFile, rm, stat, writeFile, chmod } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { generateKeyPair, isWireGuardKey, loadOrCreateKey, publicKeyOf } from "./keys.js";

let dir: string | undefined;
afterEach(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
  dir = undefined;
});

describe("keys", () => {
  it("derives the public key exactly as `wg pubkey` does", () => {
    // `echo <private> | wg pubkey` (wireguard-tools 1.0.20210914) printed this public key.
    expect(publicKeyOf("YEyWtqlfwnIzdJ1mRNnmW9yqtP9rs4pVAPgRk8sKHmU=")).toBe("OIflxh+Ly9cPY2hfHIF6q7qF7UkIPTw2J1I/UyQKU1g=");
  });

  it("generates valid pairs", () => {
    const k = generateKeyPair();
    expect(isWireGuardKey(k.privateKey) && isWireGuardKey(k.publicKey)).toBe(true);
    expect(publicKeyOf(k.privateKey)).toBe(k.publicKey);
    expect(isWireGuardKey("not a key")).toBe(false);
  });

  it("creates the key file once (mode 0600) and reuses it", async () => {
    dir = await mkdtemp(join(tmpdir(), "netd-keys-"));
    const path = join(dir, "state", "private.key");
    const first = await loadOrCreateKey(path);
    expect(first.created).toBe(true);
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    const second = await loadOrCreateKey(path);
    expect(second).toEqual({ keys: first.keys, created: false });
    expect((await readFile(path, "utf8")).trim()).toBe(first.keys.privateKey);
  });

  it("refuses a file that is not a key, or that others can read", async () => {
    dir = await mkdtemp(join(tmpdir(), "netd-keys-"));
    const path = join(dir, "private.key");
    await writeFile(path, "garbage\n", { mode: 0o600 });
    await expect(loadOrCreateKey(path)).rejects.toThrow(/does not hold a WireGuard private key/);
    await writeFile(path, `${generateKeyPair().privateKey}\n`);
    await chmod(path, 0o644);
    await expect(loadOrCreateKey(path)).rejects.toThrow(/readable by others/);
  });
});
