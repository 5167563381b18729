/**
 * `make demo` (storage half): one encrypted volume's life, driven through the plugin's gRPC API
 * in kubelet's order, with evidence a person can check: the data reads back through the
 * volume, the raw disk holds no trace of it, and after DeleteVolume even the header is gone.
 * Runs where the kernel has dm-crypt (the VM tier on machines without it).
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, open, readFile, rm, stat, truncate, writeFile, type FileHandle } from "node:fs/promises";
import { release, tmpdir } from "node:os";
import { join } from "node:path";
import { createRunner } from "../lib/exec.js";
import { createLogger } from "../lib/log.js";
import { mappingStatus } from "../csi/luks/luks-device.js";
import { deviceNumber, readMounts, topMountAt } from "../csi/node/mounts.js";
import { startPlugin } from "../test/support/csi-plugin.js";
import { createKeyDir } from "../test/support/key-dir.js";
import { scrubTree } from "../test/support/scrub.js";

const MiB = 1024 * 1024;
const run = createRunner({ logger: createLogger({ component: "demo", level: "silent" }) });
const say = (text: string): void => void process.stdout.write(`${text}\n`);
const step = (n: number, what: string, evidence: string): void => say(`${String(n).padStart(2)}. ${what.padEnd(44)} ${evidence}`);

async function main(): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), "cloak-demo-"));
  const plugin = await startPlugin({ dir: join(root, "plugin"), keyDir: await createKeyDir(join(root, "keys")) });
  try {
    say(`cloak demo: an encrypted volume, kernel ${release()} (${process.env["CLOAK_VM_MODE"] === "vm" ? "in the VM tier" : "this machine"})\n`);
    const { controller, node } = plugin.client;
    const capability = { mount: { fs_type: "ext4" }, access_mode: { mode: "SINGLE_NODE_WRITER" as const } };

    const { volume } = await controller("CreateVolume", { name: "demo-pvc", capacity_range: { required_bytes: 64 * MiB }, volume_capabilities: [capability] });
    const id = volume!.volume_id;
    const disk = join(plugin.volumesDir, `${id}.img`);
    step(1, "CreateVolume demo-pvc, 64 MiB", `${id}: ${(await stat(disk)).size / MiB} MiB sparse file (64 MiB + 16 MiB LUKS2 header)`);

    const staging = join(plugin.kubeletDir, "plugins", "staging", id);
    await node("NodeStageVolume", { volume_id: id, staging_target_path: staging, volume_capability: capability, volume_context: volume!.volume_context });
    const header = await run({ file: "cryptsetup", args: ["luksDump", disk] });
    const field = (name: string): string => new RegExp(`${name}:\\s*(\\S+)`).exec(header.stdout)?.[1] ?? "?";
    step(2, "NodeStageVolume", `LUKS2 ${field("cipher")}, ${field("sector")}-byte sectors, PBKDF ${field("PBKDF")}, key id = UUID ${field("UUID")}`);

    const target = join(plugin.kubeletDir, "pods", "demo-pod", "volumes", id);
    await node("NodePublishVolume", { volume_id: id, staging_target_path: staging, target_path: target, volume_capability: capability });
    const mapper = `/dev/mapper/cloak-${id}`;
    const published = await topMountAt(target);
    const mapperDevice = await deviceNumber(mapper);
    if (published?.device !== mapperDevice) throw new Error(`${target} is not a mount of ${mapper} (${published?.source ?? "nothing mounted"})`);
    step(3, "NodePublishVolume", `${published.fsType} on ${mapper} (device ${mapperDevice}), mounted at the pod's path`);

    const marker = `CLOAK-DEMO-SECRET-${randomBytes(8).toString("hex")}`;
    await writeFile(join(target, "secret.txt"), `${marker}\n`.repeat(1000));
    await run({ file: "sync", args: [] });
    step(4, "the pod writes a secret", `read back through the volume: ${(await readFile(join(target, "secret.txt"), "utf8")).split("\n")[0]}`);

    await node("NodeUnpublishVolume", { volume_id: id, target_path: target });
    await node("NodeUnstageVolume", { volume_id: id, staging_target_path: staging });
    const stillMounted = (await readMounts()).filter((m) => m.device === mapperDevice || m.mountPoint === target || m.mountPoint === staging);
    const mapping = await mappingStatus(`cloak-${id}`);
    const loops = (await run({ file: "losetup", args: ["--noheadings", "--output", "NAME", "--associated", disk] })).stdout.trim();
    if (stillMounted.length > 0 || mapping.active || loops !== "") {
      throw new Error(`left behind: ${stillMounted.length} mounts, mapping ${mapping.active ? "open" : "closed"}, loop devices ${loops || "none"}`);
    }
    step(5, "NodeUnpublishVolume, NodeUnstageVolume", "no mount of it left, no mapping cloak-…, no loop device on the disk");

    const raw = await readFile(disk);
    step(6, "search the raw disk for the secret", raw.includes(Buffer.from(marker)) ? "FOUND — this must not happen" : `not found in ${raw.length / MiB} MiB of ciphertext`);
    const control = await plainControl(root, marker);
    step(7, "control: same write on a plain ext4 disk", control === undefined ? "not found (the control failed)" : `found at byte ${control} of the plain disk`);

    // Held open across the delete: after the unlink this still reads what the erase left.
    const held = await open(disk, "r");
    let erased: { changed: number; used: number; luks: boolean };
    try {
      await controller("DeleteVolume", { volume_id: id });
      erased = await erasedHeader(held, raw, join(root, "left-by-the-erase.img"));
    } finally {
      await held.close();
    }
    const gone = await stat(disk).then(() => false, () => true);
    step(8, "DeleteVolume", gone && erased.changed === erased.used && !erased.luks
      ? `file removed; before that, all ${erased.used} used 4 KiB blocks of the 16 MiB header area overwritten: cryptsetup finds no LUKS header`
      : `NOT ERASED: file ${gone ? "removed" : "still there"}, ${erased.changed} of ${erased.used} header blocks changed, LUKS header ${erased.luks ? "still there" : "gone"}`);
    say(`\nThe secret was readable only through the volume; the disk never held it in plain text.`);
    if (raw.includes(Buffer.from(marker)) || control === undefined || !gone || erased.changed !== erased.used || erased.luks) process.exitCode = 1;
  } finally {
    await plugin.stop();
    await scrubTree(root);
    await rm(root, { recursive: true, force: true });
  }
}

/**
 * What the crypto-erase left of the header area (the first 16 MiB), read through a handle
 * opened before the delete: how many of the 4 KiB blocks that held something differ from
 * the disk as it was, and whether cryptsetup still finds a LUKS header there.
 */
async function erasedHeader(held: FileHandle, before: Buffer, scratch: string): Promise<{ changed: number; used: number; luks: boolean }> {
  const header = Buffer.alloc(16 * MiB);
  await held.read(header, 0, header.length, 0);
  let used = 0;
  let changed = 0;
  for (let offset = 0; offset < header.length; offset += 4096) {
    const old = before.subarray(offset, offset + 4096);
    if (old.equals(Buffer.alloc(4096))) continue;
    used += 1;
    if (!old.equals(header.subarray(offset, offset + 4096))) changed += 1;
  }
  await writeFile(scratch, header);
  const luks = (await run({ file: "cryptsetup", args: ["isLuks", scratch], okExitCodes: [1] })).exitCode === 0;
  return { changed, used, luks };
}

/** The same write on an unencrypted ext4: where the secret is in the file for anyone to read. */
async function plainControl(root: string, marker: string): Promise<number | undefined> {
  const file = join(root, "plain.img");
  await (await open(file, "w")).close();
  await truncate(file, 64 * MiB);
  await run({ file: "mkfs.ext4", args: ["-q", "-F", file] });
  const mnt = join(root, "plain-mnt");
  await run({ file: "mkdir", args: ["-p", mnt] });
  await run({ file: "mount", args: ["-o", "loop", file, mnt] });
  try {
    await writeFile(join(mnt, "secret.txt"), `${marker}\n`.repeat(1000));
  } finally {
    await run({ file: "umount", args: [mnt] });
  }
  const index = (await readFile(file)).indexOf(Buffer.from(marker));
  return index >= 0 ? index : undefined;
}

main().catch((err: unknown) => {
  process.stderr.write(`demo failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exitCode = 1;
});
