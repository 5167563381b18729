import { createHash, randomBytes } from "node:crypto";
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { topMountAt } from "../../../csi/node/mounts.js";
import { createKeyDir } from "../../support/key-dir.js";
import { CsiFixture, blockCapability, keyFor, mapperExists, run } from "./fixture.js";

// What cloak refuses, on a real kernel: the refusal must come before anything is changed,
// nothing may be opened that the policy rejects, and no filesystem with errors is mounted
// unchecked.

const fx = new CsiFixture();
beforeAll(() => fx.setUp());
afterAll(() => fx.tearDown());

async function sha256(file: string): Promise<string> {
  return createHash("sha256").update(await readFile(file)).digest("hex");
}

/** A second way into the volume, added by someone who holds its key: what the policy forbids. */
async function addKeyslot(id: string): Promise<void> {
  const extraKey = join(fx.root, `extra-key-${id}`);
  await writeFile(extraKey, randomBytes(32), { mode: 0o600 });
  await run({
    file: "cryptsetup",
    args: ["luksAddKey", "--batch-mode", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--key-file", "-", fx.volumeFile(id), extraKey],
    input: await keyFor(fx, (await fx.luksUuid(id))!),
  });
}

describe("a wrong key", () => {
  const id = "vol-wrong-key";

  it("is refused with FailedPrecondition, and the data survives", async () => {
    await fx.newVolume(id);
    await fx.stage(id);
    const target = await fx.publish(id);
    await writeFile(join(target, "data"), "precious");
    await fx.unpublish(id);
    await fx.unstage(id);
    const before = await sha256(fx.volumeFile(id));

    // The same volumes, served with another cluster's master secret.
    const otherKeys = await createKeyDir(join(fx.root, "other-keys"));
    await fx.restart({ keyDir: otherKeys });
    await expect(fx.stage(id)).rejects.toMatchObject({
      code: status.FAILED_PRECONDITION,
      details: expect.stringMatching(/does not open .* wrong key, or the key source's master secret is not the one this volume was made with/),
    });
    expect(mapperExists(id)).toBe(false);
    await fx.unstage(id);
    expect(await sha256(fx.volumeFile(id))).toBe(before);

    await fx.restart();
    await fx.stage(id);
    expect(await readFile(join(await fx.publish(id), "data"), "utf8")).toBe("precious");
    await fx.unpublish(id);
    await fx.unstage(id);
  });
});

describe("a disk holding a plain filesystem", () => {
  it("is refused and its files stay readable", async () => {
    const id = "vol-plain-ext4";
    const file = await fx.newVolume(id);
    await run({ file: "mkfs.ext4", args: ["-q", "-F", file] });
    const mnt = join(fx.root, "plain-mnt");
    await mkdir(mnt, { recursive: true });
    await run({ file: "mount", args: ["-o", "loop", file, mnt] });
    await writeFile(join(mnt, "file"), "plain data");
    await run({ file: "umount", args: [mnt] });
    const before = await sha256(file);

    await expect(fx.stage(id)).rejects.toMatchObject({
      code: status.FAILED_PRECONDITION,
      details: expect.stringMatching(/the disk holds ext4 filesystem .* refusing to format it/),
    });
    await fx.unstage(id);
    expect(await sha256(file)).toBe(before);
    await run({ file: "mount", args: ["-o", "loop,ro", file, mnt] });
    try {
      expect(await readFile(join(mnt, "file"), "utf8")).toBe("plain data");
    } finally {
      await run({ file: "umount", args: [mnt] });
    }
  });
});

describe("a tampered header", () => {
  it("with a second keyslot is refused and not opened", async () => {
    const id = "vol-extra-slot";
    await fx.newVolume(id);
    await fx.stage(id, blockCapability);
    await fx.unstage(id);
    await addKeyslot(id);
    await expect(fx.stage(id, blockCapability)).rejects.toMatchObject({
      code: status.FAILED_PRECONDITION,
      details: expect.stringMatching(/does not match cloak's policy and will not be opened: expected exactly one keyslot, found 2/),
    });
    expect(mapperExists(id)).toBe(false);
    await fx.unstage(id);
  });

  it("swapped for a cipher_null header that cloak's key would open is refused and not opened", async () => {
    const id = "vol-cipher-null";
    const file = await fx.newVolume(id);
    // A header whose data "encryption" is the identity function: every write would land on
    // the disk in plain text. Its keyslot accepts cloak's key for the UUID (an attacker with
    // the disk can craft such headers for any passphrase; cryptsetup itself insists on a
    // real keyslot cipher, so this test hands it the key), and it carries cloak's label.
    const uuid = "0f0e0d0c-0b0a-4908-8706-050403020100";
    const key = await keyFor(fx, uuid);
    await run({
      file: "cryptsetup",
      args: [
        "luksFormat", "--batch-mode", "--type", "luks2", "--cipher", "cipher_null-ecb", "--key-size", "0",
        "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--uuid", uuid, "--label", "in-use", "--subsystem", "cloak",
        "--key-file", "-", file,
      ],
      input: key,
    });
    // Without the policy check, this is a header cloak would open and then write through.
    await run({ file: "cryptsetup", args: ["open", "--test-passphrase", "--key-file", "-", file], input: key });

    await expect(fx.stage(id, blockCapability)).rejects.toMatchObject({
      code: status.FAILED_PRECONDITION,
      details: expect.stringMatching(/segment cipher is "cipher_null-ecb", policy requires "aes-xts-plain64"/),
    });
    expect(mapperExists(id)).toBe(false);
    await fx.unstage(id);
  });

  it("changed while the volume is in use makes its condition abnormal", async () => {
    const id = "vol-condition";
    await fx.newVolume(id);
    await fx.stage(id);
    const target = await fx.publish(id);
    await addKeyslot(id);
    const stats = await fx.node("NodeGetVolumeStats", { volume_id: id, volume_path: target });
    expect(stats.volume_condition).toEqual({
      abnormal: true,
      message: expect.stringMatching(/header on the disk fails cloak's policy: expected exactly one keyslot, found 2/),
    });
    await fx.unpublish(id);
    await fx.unstage(id);
  });

  it("a decrypted device that died under a published volume makes its condition abnormal", async () => {
    const id = "vol-dead-mapping";
    await fx.newVolume(id);
    await fx.stage(id);
    const target = await fx.publish(id);
    // What a failed or forcibly removed mapping looks like to its users: every I/O fails.
    await run({ file: "dmsetup", args: ["wipe_table", `cloak-${id}`] });
    const stats = await fx.node("NodeGetVolumeStats", { volume_id: id, volume_path: target });
    expect(stats.volume_condition).toEqual({ abnormal: true, message: expect.stringMatching(/decrypted device is open on nothing/) });
    await run({ file: "umount", args: ["-l", target] });
    await run({ file: "umount", args: ["-l", fx.stagingPath(id)] });
    await run({ file: "dmsetup", args: ["remove", "--force", `cloak-${id}`] });
    await fx.unpublish(id);
    await fx.unstage(id);
  });
});

describe("a filesystem with errors", () => {
  /** Edits a staged-before volume's ext4 the way a fault would, and marks it as having errors (as the kernel does when it meets one). */
  async function damage(id: string, debugfsCommand: string): Promise<void> {
    const name = `test-damage-${id}`;
    await run({ file: "cryptsetup", args: ["open", "--key-file", "-", fx.volumeFile(id), name], input: await keyFor(fx, (await fx.luksUuid(id))!) });
    try {
      await run({ file: "debugfs", args: ["-w", "-R", debugfsCommand, `/dev/mapper/${name}`] });
      await run({ file: "tune2fs", args: ["-E", "force_fsck", `/dev/mapper/${name}`] });
    } finally {
      await run({ file: "cryptsetup", args: ["close", name] });
    }
  }

  async function volumeWithFiles(id: string): Promise<void> {
    await fx.newVolume(id);
    await fx.stage(id);
    const target = await fx.publish(id);
    await writeFile(join(target, "kept"), "kept");
    await writeFile(join(target, "damaged"), "damaged");
    await fx.unpublish(id);
    await fx.unstage(id);
  }

  it("that e2fsck can repair on its own is repaired before it is mounted", async () => {
    const id = "vol-fsck-repairable";
    await volumeWithFiles(id);
    // A directory entry left pointing at a cleared inode.
    await damage(id, "clri /damaged");
    await fx.stage(id);
    expect(fx.logged("the filesystem check repaired the volume's filesystem")).toBe(true);
    const target = await fx.publish(id);
    expect((await readdir(target)).sort()).toEqual(["kept", "lost+found"]);
    expect(await readFile(join(target, "kept"), "utf8")).toBe("kept");
    await fx.unpublish(id);
    await fx.unstage(id);
  });

  it("that needs a manual repair is refused with FailedPrecondition and not mounted", async () => {
    const id = "vol-fsck-manual";
    await volumeWithFiles(id);
    await damage(id, "clri <2>");
    await expect(fx.stage(id)).rejects.toMatchObject({
      code: status.FAILED_PRECONDITION,
      details: expect.stringMatching(/ext4 filesystem has errors the check cannot repair on its own and needs a manual repair .*Root inode is not a directory/),
    });
    expect(await topMountAt(fx.stagingPath(id))).toBeUndefined();
    await fx.unstage(id);
    expect(mapperExists(id)).toBe(false);
  });
});
