import { createHash, randomBytes } from "node:crypto";
import { mkdir, mkdtemp, open, readFile, rm, truncate } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { deriveDataKey } from "../../../lib/data-key.js";
import { createRunner } from "../../../lib/exec.js";
import { createLogger } from "../../../lib/log.js";
import { createFileKeySource } from "../../../csi/keys/file-key-source.js";
import { LuksDevices } from "../../../csi/luks/luks-device.js";
import * as blkid from "../../../csi/tools/blkid.js";
import { createKeyDir } from "../../support/key-dir.js";
import { startPlugin, type RunningPlugin } from "../../support/csi-plugin.js";
import { scrubTree } from "../../support/scrub.js";

// Real cryptsetup, blkid and losetup on real loop devices, on this machine's kernel (which
// has no device-mapper: everything up to `cryptsetup open` is tested here, the rest in the
// VM tier).

const MiB = 1024 * 1024;
const run = createRunner({ logger: createLogger({ component: "test", level: "silent" }) });
const mountCapability = { mount: { fs_type: "ext4" }, access_mode: { mode: "SINGLE_NODE_WRITER" as const } };

let root: string;
let keyDir: string;
let plugin: RunningPlugin;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "cloak-host-luks-"));
  keyDir = await createKeyDir(join(root, "keys"));
  plugin = await startPlugin({ dir: join(root, "plugin"), keyDir });
});
afterAll(async () => {
  await plugin?.stop("SIGKILL");
  await scrubTree(root);
  await rm(root, { recursive: true, force: true });
});

async function newVolume(id: string, size = 64 * MiB): Promise<string> {
  const file = join(plugin.volumesDir, `${id}.img`);
  await (await open(file, "w")).close();
  await truncate(file, size);
  return file;
}

async function sha256(file: string): Promise<string> {
  return createHash("sha256").update(await readFile(file)).digest("hex");
}

function stage(volumeId: string) {
  return plugin.client.node("NodeStageVolume", {
    volume_id: volumeId,
    staging_target_path: join(plugin.kubeletDir, "staging", volumeId),
    volume_capability: mountCapability,
  });
}

async function attachedLoops(file: string): Promise<string[]> {
  const result = await run({ file: "losetup", args: ["--noheadings", "--output", "NAME", "--associated", file] });
  return result.stdout.split("\n").filter((l) => l.startsWith("/dev/"));
}

describe("never formatting a disk that holds something", () => {
  it("refuses a disk holding ext4, names it, and leaves every byte as it was", async () => {
    const file = await newVolume("holds-ext4");
    await run({ file: "mkfs.ext4", args: ["-q", "-F", file] });
    const before = await sha256(file);
    await expect(stage("holds-ext4")).rejects.toMatchObject({
      code: status.FAILED_PRECONDITION,
      details: expect.stringMatching(/volume holds-ext4: the disk holds ext4 filesystem \(UUID [0-9a-f-]+\); refusing to format it/),
    });
    expect(await sha256(file)).toBe(before);
  });

  it("refuses a disk holding data no signature describes", async () => {
    const file = await newVolume("holds-noise");
    const handle = await open(file, "r+");
    await handle.write(randomBytes(512), 0, 512, 3 * 4096);
    await handle.close();
    const before = await sha256(file);
    await expect(stage("holds-noise")).rejects.toMatchObject({
      code: status.FAILED_PRECONDITION,
      details: expect.stringMatching(/holds data that no known signature describes \(non-zero byte at offset 12288\)/),
    });
    expect(await sha256(file)).toBe(before);
  });

  it("refuses a LUKS1 disk", async () => {
    const file = await newVolume("holds-luks1");
    await run({
      file: "cryptsetup",
      args: ["luksFormat", "--batch-mode", "--type", "luks1", "--pbkdf-force-iterations", "1000", "--key-file", "-", file],
      input: randomBytes(32),
    });
    const before = await sha256(file);
    await expect(stage("holds-luks1")).rejects.toMatchObject({
      code: status.FAILED_PRECONDITION,
      details: expect.stringMatching(/LUKS1 header; cloak opens only LUKS2/),
    });
    expect(await sha256(file)).toBe(before);
  });
});

describe("formatting an empty disk", () => {
  it("writes a LUKS2 header that matches policy, keyed by its UUID, and keeps it across a failed stage's retry", async () => {
    const file = await newVolume("fresh-1");
    // This kernel has no device-mapper, so the stage formats the disk and then fails to open
    // it: exactly the "interrupted after luksFormat" state a crash leaves behind.
    await expect(stage("fresh-1")).rejects.toMatchObject({ code: status.INTERNAL, details: expect.stringMatching(/device-mapper/) });
    const first = blkid.parseProbe(await run(blkid.probe(file)));
    expect(first).toMatchObject({ kind: "found", fields: { TYPE: "crypto_LUKS", VERSION: "2", LABEL: "fresh", SUBSYSTEM: "cloak" } });
    const uuid = first.kind === "found" ? first.fields["UUID"] : undefined;
    expect(uuid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);

    // The retry must not format again: same header, same UUID.
    const headerBefore = (await readFile(file)).subarray(0, 16 * MiB);
    await expect(stage("fresh-1")).rejects.toMatchObject({ code: status.INTERNAL });
    expect((await readFile(file)).subarray(0, 16 * MiB).equals(headerBefore)).toBe(true);

    // The header opens with the key derived for its UUID, and only with that key.
    const keys = await createFileKeySource({ dir: keyDir });
    const rightKey = await keys.getKey(uuid!, 32);
    await run({ file: "cryptsetup", args: ["open", "--test-passphrase", "--key-file", "-", file], input: rightKey });
    const other = await keys.getKey("3f2504e0-4f89-41d3-9a0c-0305e82c3301", 32);
    await expect(
      run({ file: "cryptsetup", args: ["open", "--test-passphrase", "--key-file", "-", file], input: other }),
    ).rejects.toMatchObject({ exitCode: 2 });
    await keys.close();

    // The disk was released even though the stage failed half-way.
    await plugin.client.node("NodeUnstageVolume", { volume_id: "fresh-1", staging_target_path: join(plugin.kubeletDir, "staging", "fresh-1") });
    expect(await attachedLoops(file)).toEqual([]);
  });

  it("never writes a key to its logs, even at debug level", async () => {
    const probe = blkid.parseProbe(await run(blkid.probe(join(plugin.volumesDir, "fresh-1.img"))));
    const uuid = probe.kind === "found" ? probe.fields["UUID"]! : "";
    const masterSecret = await readFile(join(keyDir, "master-secret"));
    const salt = await readFile(join(keyDir, "salt"));
    const key = deriveDataKey(masterSecret, salt, uuid, 32);
    const output = plugin.output();
    expect(output).toContain(uuid);
    expect(plugin.logs.some((l) => l["level"] === 20)).toBe(true);
    for (const encoding of ["hex", "base64", "base64url", "latin1"] as const) {
      expect(output).not.toContain(key.toString(encoding));
      expect(output).not.toContain(masterSecret.toString(encoding));
    }
  });

  it("formats through LuksDevices with cloak's exact layout", async () => {
    const file = join(root, "direct.img");
    await (await open(file, "w")).close();
    await truncate(file, 64 * MiB);
    const loop = (await run({ file: "losetup", args: ["--find", "--show", file] })).stdout.trim();
    const keys = await createFileKeySource({ dir: keyDir });
    try {
      const luks = new LuksDevices({ run, keys, bypassWorkqueues: false });
      const uuid = await luks.format(loop, { integrity: false }, undefined);
      expect(await luks.checkHeader(loop, undefined)).toEqual({ violations: [], integrity: false });
      const dump = JSON.parse((await run({ file: "cryptsetup", args: ["luksDump", "--dump-json-metadata", loop] })).stdout) as {
        keyslots: Record<string, { kdf: { type: string; iterations: number } }>;
        segments: Record<string, { encryption: string; sector_size: number; offset: string }>;
      };
      expect(dump.keyslots["0"]?.kdf).toMatchObject({ type: "pbkdf2", iterations: 1000 });
      expect(dump.segments["0"]).toMatchObject({ encryption: "aes-xts-plain64", sector_size: 4096, offset: String(16 * MiB) });
      expect((await run({ file: "cryptsetup", args: ["luksUUID", loop] })).stdout.trim()).toBe(uuid);

      // A second keyslot, added by someone holding the key, makes the header fail policy.
      const key = await keys.getKey(uuid, 32);
      const extra = join(root, "extra-key");
      await mkdir(root, { recursive: true });
      await (await open(extra, "w", 0o600)).writeFile(randomBytes(32));
      await run({
        file: "cryptsetup",
        args: ["luksAddKey", "--batch-mode", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--key-file", "-", loop, extra],
        input: key,
      });
      await expect(luks.checkHeader(loop, undefined)).rejects.toThrow(/does not match cloak's policy .* expected exactly one keyslot, found 2/);
    } finally {
      await keys.close();
      await run({ file: "losetup", args: ["--detach", loop] });
    }
  });
});

describe("concurrency", () => {
  it("answers Aborted to a second stage of a volume already being staged", async () => {
    await newVolume("busy-1");
    const results = await Promise.allSettled([stage("busy-1"), stage("busy-1")]);
    const codes = results.map((r) => (r.status === "rejected" ? (r.reason as { code: number }).code : status.OK));
    // One call does the work (and fails at open on this dm-less kernel), the other is turned away.
    expect(codes).toContain(status.ABORTED);
    expect(codes.filter((c) => c === status.ABORTED)).toHaveLength(1);
    const aborted = results.find((r) => r.status === "rejected" && (r.reason as { code: number }).code === status.ABORTED);
    expect((aborted as PromiseRejectedResult).reason).toMatchObject({
      details: expect.stringMatching(/an operation on busy-1 is already in progress \(NodeStageVolume\)/),
    });
    await plugin.client.node("NodeUnstageVolume", { volume_id: "busy-1", staging_target_path: join(plugin.kubeletDir, "staging", "busy-1") });
  });
});
