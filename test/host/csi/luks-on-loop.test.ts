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
import { kernelHasDmCrypt } from "../../support/kernel.js";
import { startPlugin, type RunningPlugin } from "../../support/csi-plugin.js";
import { scrubTree } from "../../support/scrub.js";

// Real cryptsetup, blkid and losetup on real loop devices, on this machine's kernel. What
// needs no device-mapper is tested here: formatting (stopped by a failpoint before the open),
// the header, refusals, keys. Opening is the VM tier's; where a call here goes on to open, the
// expected answer depends on whether this kernel has dm-crypt, so the file passes on both.

const MiB = 1024 * 1024;
const run = createRunner({ logger: createLogger({ component: "test", level: "silent" }) });
const mountCapability = { mount: { fs_type: "ext4" }, access_mode: { mode: "SINGLE_NODE_WRITER" as const } };
const dmCrypt = kernelHasDmCrypt();

let root: string;
let keyDir: string;
let plugin: RunningPlugin;
// Each armed once (CLOAK_FAILPOINTS_FIRED remembers what fired), so a restart with the same
// environment is the retry kubelet makes.
const FAILPOINTS = ["stage:after-format@fresh-1", "stage:mid-format@cut-off"];

async function restart(): Promise<void> {
  await plugin?.stop("SIGKILL");
  plugin = await startPlugin({
    dir: join(root, "plugin"),
    keyDir,
    env: { CLOAK_FAILPOINTS: FAILPOINTS.join(","), CLOAK_FAILPOINTS_FIRED: join(root, "fired") },
  });
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "cloak-host-luks-"));
  keyDir = await createKeyDir(join(root, "keys"));
  await mkdir(join(root, "fired"));
  await restart();
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

function unstage(volumeId: string) {
  return plugin.client.node("NodeUnstageVolume", { volume_id: volumeId, staging_target_path: join(plugin.kubeletDir, "staging", volumeId) });
}

/** A stage that goes on to open: it succeeds where the kernel has dm-crypt, and fails at the open where it has not. */
async function expectStageToReachOpen(volumeId: string): Promise<void> {
  if (dmCrypt) {
    await stage(volumeId);
  } else {
    await expect(stage(volumeId)).rejects.toMatchObject({ code: status.INTERNAL, details: expect.stringMatching(/device-mapper|cryptsetup open/) });
  }
}

async function attachedLoops(file: string): Promise<string[]> {
  const result = await run({ file: "losetup", args: ["--noheadings", "--output", "NAME", "--associated", file] });
  return result.stdout.split("\n").filter((l) => l.startsWith("/dev/"));
}

interface HeaderJson {
  keyslots: Record<string, unknown>;
}

async function headerJson(file: string): Promise<HeaderJson> {
  return JSON.parse((await run({ file: "cryptsetup", args: ["luksDump", "--dump-json-metadata", file] })).stdout) as HeaderJson;
}

async function keyFor(uuid: string): Promise<Buffer> {
  const keys = await createFileKeySource({ dir: keyDir });
  try {
    return await keys.getKey(uuid, 32);
  } finally {
    await keys.close();
  }
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
  it("writes a LUKS2 header that matches policy, keyed by its UUID, and keeps it across the retry", async () => {
    const file = await newVolume("fresh-1");
    // Killed right after luksFormat: the state a crash there leaves behind.
    await expect(stage("fresh-1")).rejects.toMatchObject({ code: status.UNAVAILABLE });
    await restart();
    const first = blkid.parseProbe(await run(blkid.probe(file)));
    expect(first).toMatchObject({ kind: "found", fields: { TYPE: "crypto_LUKS", VERSION: "2", LABEL: "fresh", SUBSYSTEM: "cloak" } });
    const uuid = first.kind === "found" ? first.fields["UUID"] : undefined;
    expect(uuid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(Object.keys((await headerJson(file)).keyslots)).toEqual(["0"]);

    // The retry must not format again: the keyslot area (where a new format would put a new,
    // random volume key) and the UUID stay as they were. (The label may change: on a kernel
    // with dm-crypt the retry goes on to mount.)
    const keyslotsBefore = (await readFile(file)).subarray(32 * 1024, 16 * MiB);
    await expectStageToReachOpen("fresh-1");
    expect((await readFile(file)).subarray(32 * 1024, 16 * MiB).equals(keyslotsBefore)).toBe(true);
    expect(await run({ file: "cryptsetup", args: ["luksUUID", file] })).toMatchObject({ stdout: `${uuid}\n` });

    // The header opens with the key derived for its UUID, and only with that key.
    await run({ file: "cryptsetup", args: ["open", "--test-passphrase", "--key-file", "-", file], input: await keyFor(uuid!) });
    await expect(
      run({ file: "cryptsetup", args: ["open", "--test-passphrase", "--key-file", "-", file], input: await keyFor("3f2504e0-4f89-41d3-9a0c-0305e82c3301") }),
    ).rejects.toMatchObject({ exitCode: 2 });

    // The disk is released by the unstage that follows, whatever the stage did.
    await unstage("fresh-1");
    expect(await attachedLoops(file)).toEqual([]);
  });

  it("formats again, with the same UUID, a disk whose format was cut off between header and keyslot", async () => {
    const file = await newVolume("cut-off");
    // The failpoint leaves what a kill inside luksFormat leaves: cloak's header, no keyslot.
    await expect(stage("cut-off")).rejects.toMatchObject({ code: status.UNAVAILABLE });
    await restart();
    expect(Object.keys((await headerJson(file)).keyslots)).toEqual([]);
    const probe = blkid.parseProbe(await run(blkid.probe(file)));
    expect(probe).toMatchObject({ kind: "found", fields: { LABEL: "fresh", SUBSYSTEM: "cloak" } });
    const uuid = probe.kind === "found" ? probe.fields["UUID"]! : "";

    await expectStageToReachOpen("cut-off");
    expect(Object.keys((await headerJson(file)).keyslots)).toEqual(["0"]);
    expect((await run({ file: "cryptsetup", args: ["luksUUID", file] })).stdout.trim()).toBe(uuid);
    await run({ file: "cryptsetup", args: ["open", "--test-passphrase", "--key-file", "-", file], input: await keyFor(uuid) });
    expect(plugin.logs.some((l) => String(l["msg"]).includes("format was cut off before its keyslot was written"))).toBe(true);
    await unstage("cut-off");
  });

  it.each([
    ["labelled in use (someone removed its keyslot: a header backup may still open it)", "in-use", "cloak", false],
    ["of another subsystem", "fresh", "other", false],
    ["whose data area was written", "fresh", "cloak", true],
  ])("never formats again a header without keyslots %s", async (_name, label, subsystem, writeData) => {
    const id = `no-keyslot-${label}-${subsystem}-${String(writeData)}`;
    const file = await newVolume(id);
    const key = randomBytes(32);
    await run({
      file: "cryptsetup",
      args: [
        "luksFormat", "--batch-mode", "--type", "luks2", "--cipher", "aes-xts-plain64", "--key-size", "512", "--sector-size", "4096",
        "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--label", label, "--subsystem", subsystem, "--key-file", "-", file,
      ],
      input: key,
    });
    await run({ file: "cryptsetup", args: ["luksErase", "--batch-mode", file] });
    if (writeData) {
      const handle = await open(file, "r+");
      // Where the check reads: the first and last MiB of the data segment.
      await handle.write(randomBytes(4096), 0, 4096, 16 * MiB + 8192);
      await handle.close();
    }
    const before = await sha256(file);
    await expect(stage(id)).rejects.toMatchObject({
      code: status.FAILED_PRECONDITION,
      details: expect.stringMatching(/does not match cloak's policy .* expected exactly one keyslot, found 0/),
    });
    expect(await sha256(file)).toBe(before);
    await unstage(id);
  });

  it("never formats again a cut-off header whose other valid copy, older, says the volume was in use", async () => {
    // What a relabel cut off between its two writes leaves (csi/luks/header.ts): the primary
    // newer, the secondary as it was. Here the primary looks like a cut-off format and the
    // secondary says "in-use": every valid copy must be a cut-off format, not only the one
    // cryptsetup uses (and blkid reads).
    const id = "no-keyslot-older-copy-in-use";
    const file = await newVolume(id);
    await run({
      file: "cryptsetup",
      args: [
        "luksFormat", "--batch-mode", "--type", "luks2", "--cipher", "aes-xts-plain64", "--key-size", "512", "--sector-size", "4096",
        "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--label", "fresh", "--subsystem", "cloak", "--key-file", "-", file,
      ],
      input: randomBytes(32),
    });
    await run({ file: "cryptsetup", args: ["luksErase", "--batch-mode", file] });
    const HDR = 16384;
    const secondary = Buffer.from((await readFile(file)).subarray(HDR, 2 * HDR));
    secondary.writeBigUInt64BE(secondary.readBigUInt64BE(16) - 1n, 16);
    secondary.fill(0, 24, 72);
    secondary.write("in-use", 24, "latin1");
    secondary.fill(0, 448, 512);
    createHash("sha256").update(secondary).digest().copy(secondary, 448);
    const handle = await open(file, "r+");
    await handle.write(secondary, 0, secondary.length, HDR);
    await handle.close();
    expect(blkid.parseProbe(await run(blkid.probe(file)))).toMatchObject({ kind: "found", fields: { LABEL: "fresh", SUBSYSTEM: "cloak" } });
    const before = await sha256(file);
    await expect(stage(id)).rejects.toMatchObject({
      code: status.FAILED_PRECONDITION,
      details: expect.stringMatching(/does not match cloak's policy .* expected exactly one keyslot, found 0/),
    });
    expect(await sha256(file)).toBe(before);
    await unstage(id);
  });

  it("never writes a key to its logs, even at debug level", async () => {
    // "cut-off" was formatted and its key used by the process running now.
    const probe = blkid.parseProbe(await run(blkid.probe(join(plugin.volumesDir, "cut-off.img"))));
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
    // One call does the work (which ends at the open where the kernel has no dm-crypt), the other is turned away.
    expect(codes).toContain(status.ABORTED);
    expect(codes.filter((c) => c === status.ABORTED)).toHaveLength(1);
    const aborted = results.find((r) => r.status === "rejected" && (r.reason as { code: number }).code === status.ABORTED);
    expect((aborted as PromiseRejectedResult).reason).toMatchObject({
      details: expect.stringMatching(/an operation on busy-1 is already in progress \(NodeStageVolume\)/),
    });
    await plugin.client.node("NodeUnstageVolume", { volume_id: "busy-1", staging_target_path: join(plugin.kubeletDir, "staging", "busy-1") });
  });
});
