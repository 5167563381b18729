import { mkdir, mkdtemp, readFile, rm, truncate, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { createRunner, type Command, type Runner } from "../../lib/exec.js";
import { createLogger } from "../../lib/log.js";

// Proves that the VM tier is real: this file runs inside test/vm/run.sh (the VM, or natively on
// a kernel with dm-crypt and WireGuard), and the kernel features the other VM tests rely on
// work there without udev or systemd. If the harness regressed to running on a kernel without
// them, these tests fail; they never skip.

const run: Runner = createRunner({ logger: createLogger({ component: "vm-smoke", level: "silent" }) });
const cmd = (file: string, ...args: string[]): Command => ({ file, args });

/** Names of what these tests create in the shared kernel: unique to this file and process. */
const prefix = `cloak-vmsmoke-${process.pid}`;

/** Undo steps, run newest first after each test whether it passed or not. */
const undo: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  const errors: unknown[] = [];
  for (const step of undo.splice(0).reverse()) {
    await step().catch((err: unknown) => errors.push(err));
  }
  if (errors.length > 0) throw new AggregateError(errors, "cleanup failed");
});

describe("the VM tier", () => {
  it("runs inside test/vm/run.sh, in its VM or natively on a capable kernel", async () => {
    const mode = process.env["CLOAK_VM_MODE"] ?? "unset";
    expect(mode, "CLOAK_VM_MODE: start the VM tier with make test-vm or test/vm/run.sh").toMatch(/^(vm|native)$/);
    if (mode === "vm") {
      expect(process.env["CLOAK_IN_VM"]).toBe("1");
      // The kernel command line that run.sh gave the guest: proof that this is its VM.
      expect(await readFile("/proc/cmdline", "utf8")).toContain("cloak.init=");
    }
    // Device-mapper is registered only when its driver is loaded (a /dev/mapper/control node
    // alone proves nothing: one made by mknod outlives the driver).
    await run(cmd("modprobe", "dm_mod"));
    expect(await readFile("/proc/misc", "utf8")).toMatch(/\bdevice-mapper\b/);
  });

  it("opens a LUKS2 volume on a loop device and keeps a file system on it", async () => {
    const dir = await mkdtemp(join(tmpdir(), `${prefix}-`));
    undo.push(() => rm(dir, { recursive: true, force: true }));
    const backing = join(dir, "disk.img");
    await writeFile(backing, "");
    await truncate(backing, 64 * 1024 * 1024); // sparse: costs no memory in the guest's tmpfs
    const loop = (await run(cmd("losetup", "--find", "--show", backing))).stdout.trim();
    undo.push(() => run(cmd("losetup", "--detach", loop)));

    // The passphrase travels on stdin, as the plugin does it. pbkdf2 with few iterations: the
    // emulated CPU would spend seconds on the default argon2id, for nothing in a smoke test.
    const passphrase = "vm-smoke-passphrase-not-a-secret";
    await run({
      file: "cryptsetup",
      args: ["luksFormat", "--batch-mode", "--type", "luks2", "--cipher", "aes-xts-plain64", "--key-size", "512",
        "--sector-size", "4096", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--key-file", "-", loop],
      input: passphrase,
    });
    const name = `${prefix}-luks`;
    const open = () => run({ file: "cryptsetup", args: ["open", "--key-file", "-", loop, name], input: passphrase });
    const close = () => run(cmd("cryptsetup", "close", name));
    await open();
    undo.push(() => close().catch(() => undefined));
    // No udev in the VM: libdevmapper itself must create the node, or nothing else works.
    const mapper = `/dev/mapper/${name}`;
    expect((await run(cmd("stat", "--format", "%F", mapper))).stdout.trim()).toBe("block special file");
    expect((await run(cmd("cryptsetup", "status", name))).stdout).toMatch(/cipher:\s+aes-xts-plain64/);

    await run(cmd("mkfs.ext4", "-q", mapper));
    const mnt = join(dir, "mnt");
    await mkdir(mnt);
    await run(cmd("mount", mapper, mnt));
    undo.push(() => run({ ...cmd("umount", mnt), okExitCodes: [32] }));
    const marker = `written through dm-crypt by ${prefix}\n`;
    await run(cmd("sh", "-c", `printf %s "$1" >"$2/marker" && sync`, "sh", marker, mnt));

    // Through a full close and reopen, so the read comes from the encrypted device.
    await run(cmd("umount", mnt));
    await close();
    await open();
    await run(cmd("mount", mapper, mnt));
    expect(await readFile(join(mnt, "marker"), "utf8")).toBe(marker);
  });

  it("creates a kernel WireGuard interface in a fresh network namespace", async () => {
    const netns = `${prefix}-wg`;
    await run(cmd("ip", "netns", "add", netns));
    undo.push(() => run(cmd("ip", "netns", "delete", netns)));
    // `ip link add type wireguard` needs the kernel module: wireguard-go cannot answer it.
    await run(cmd("ip", "-n", netns, "link", "add", "wg0", "type", "wireguard"));
    const privateKey = (await run(cmd("wg", "genkey"))).stdout.trim();
    const publicKey = (await run({ file: "wg", args: ["pubkey"], input: privateKey })).stdout.trim();
    // wg reads the key from a file; /dev/stdin will not do (the runner's stdin is a socket).
    const dir = await mkdtemp(join(tmpdir(), `${prefix}-`));
    undo.push(() => rm(dir, { recursive: true, force: true }));
    const keyFile = join(dir, "private.key");
    await writeFile(keyFile, privateKey, { mode: 0o600 });
    await run(cmd("ip", "netns", "exec", netns, "wg", "set", "wg0", "listen-port", "51820", "private-key", keyFile));
    await run(cmd("ip", "-n", netns, "link", "set", "wg0", "up"));

    const show = (what: string) => run(cmd("ip", "netns", "exec", netns, "wg", "show", "wg0", what));
    expect((await show("public-key")).stdout.trim()).toBe(publicKey);
    expect((await show("listen-port")).stdout.trim()).toBe("51820");
    expect((await run(cmd("ip", "-n", netns, "-details", "link", "show", "wg0"))).stdout).toMatch(/\bwireguard\b/);
  });
});
