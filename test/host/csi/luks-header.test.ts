import { createHash, randomBytes, randomUUID } from "node:crypto";
import { mkdtemp, open, readFile, rm, truncate, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createRunner, type Command, type Runner } from "../../../lib/exec.js";
import { createLogger } from "../../../lib/log.js";
import type { KeySource } from "../../../csi/keys/key-source.js";
import * as cryptsetup from "../../../csi/luks/cryptsetup.js";
import { headerVerdict, parseHeaderArea } from "../../../csi/luks/header.js";
import { readHeaderArea } from "../../../csi/luks/header-read.js";
import { LuksDevices } from "../../../csi/luks/luks-device.js";
import { checkHeader } from "../../../csi/luks/policy.js";
import { scrubTree } from "../../support/scrub.js";

// The in-process header check (csi/luks/header.ts) against cryptsetup's own reading, on
// devices cryptsetup formats here and now: every layout it can write on this machine's kernel
// (which has no device-mapper, so cipher_null and dm-integrity headers come from the VM-made
// fixtures of csi/luks/header.test.ts), as plain files and on a loop device.

const MiB = 1024 * 1024;
const run = createRunner({ logger: createLogger({ component: "test", level: "silent" }) });
const passphrase = randomBytes(32);

let root: string;
let keyFile: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "cloak-host-header-"));
  keyFile = join(root, "key");
  await writeFile(keyFile, passphrase, { mode: 0o600 });
});
afterAll(async () => {
  await scrubTree(root);
  await rm(root, { recursive: true, force: true });
});

async function newDisk(name: string): Promise<string> {
  const file = join(root, `${name}.img`);
  await (await open(file, "w")).close();
  await truncate(file, 64 * MiB);
  return file;
}

/** cloak's exact format, from the plugin's own command builder (csi/luks/cryptsetup.ts). */
async function formatCloak(file: string): Promise<void> {
  await run(cryptsetup.luksFormat({ device: file, uuid: randomUUID(), passphrase, integrity: false }));
}

async function formatWith(file: string, flags: readonly string[]): Promise<void> {
  await run({ file: "cryptsetup", args: ["luksFormat", "--batch-mode", "--type", "luks2", "--key-file", keyFile, ...flags, file] });
}

const cheapKdf = ["--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"];

async function luksDumpJson(device: string): Promise<unknown> {
  return JSON.parse((await run(cryptsetup.luksDumpJson(device))).stdout);
}

/** The binary header's fields as `cryptsetup luksDump` prints them. */
async function luksDumpFields(device: string): Promise<{ seqid: bigint; uuid: string; label: string; subsystem: string; hdrSize: number }> {
  const text = (await run({ file: "cryptsetup", args: ["luksDump", device] })).stdout;
  const field = (name: string): string => text.match(new RegExp(`^${name}:\\s*(.*)$`, "m"))?.[1]?.trim() ?? "";
  const orEmpty = (value: string): string => (value.startsWith("(no ") ? "" : value);
  return {
    seqid: BigInt(field("Epoch")),
    uuid: field("UUID"),
    label: orEmpty(field("Label")),
    subsystem: orEmpty(field("Subsystem")),
    hdrSize: Number(field("Metadata area").split(" ")[0]),
  };
}

const variants: [string, (file: string) => Promise<void>][] = [
  ["cloak's format", formatCloak],
  ["cloak's format, relabelled in-use", async (f) => {
    await formatCloak(f);
    await run(cryptsetup.setLabel(f, "in-use"));
  }],
  ["cloak's format with a second keyslot", async (f) => {
    await formatCloak(f);
    await writeFile(`${f}.key2`, randomBytes(32));
    await run({ file: "cryptsetup", args: ["luksAddKey", "--batch-mode", ...cheapKdf, "--key-file", keyFile, f, `${f}.key2`] });
  }],
  ["cloak's format with a token", async (f) => {
    await formatCloak(f);
    await run({ file: "cryptsetup", args: ["token", "add", "--key-description", "cloak-test", f] });
  }],
  ["cryptsetup's defaults (argon2id, 512-byte sectors, no label)", (f) =>
    formatWith(f, ["--pbkdf", "argon2id", "--pbkdf-memory", "32", "--pbkdf-parallel", "1", "--pbkdf-force-iterations", "4"])],
  ["aes-cbc-essiv", (f) => formatWith(f, [...cheapKdf, "--cipher", "aes-cbc-essiv:sha256", "--key-size", "256"])],
  ["a 32 KiB header", (f) => formatWith(f, [...cheapKdf, "--luks2-metadata-size", "32k"])],
  ["a 1 MiB header", (f) => formatWith(f, [...cheapKdf, "--luks2-metadata-size", "1m", "--label", "a-label", "--subsystem", "other"])],
  ["a 4 MiB header (the largest)", (f) => formatWith(f, [...cheapKdf, "--luks2-metadata-size", "4m"])],
];

describe("freshly formatted headers: the in-process reading equals luksDump's", () => {
  it.each(variants)("%s", async (name, make) => {
    const file = await newDisk(name.replace(/\W+/g, "-"));
    await make(file);
    const parsed = parseHeaderArea(await readHeaderArea(file));
    if (!parsed.ok) throw new Error(parsed.problems.join("; "));
    const dumped = await luksDumpJson(file);
    expect(parsed.header.metadata).toEqual(dumped);
    const { metadata: _, copy, ...fields } = parsed.header;
    expect(copy).toBe("primary");
    expect(parsed.problems).toEqual([]);
    expect(fields).toEqual(await luksDumpFields(file));
    expect(headerVerdict(await readHeaderArea(file))).toEqual(checkHeader(dumped));
  });
});

describe("on a loop device, through LuksDevices", () => {
  it("checks the header with no external command", async () => {
    const file = await newDisk("loop");
    await formatCloak(file);
    const loop = (await run({ file: "losetup", args: ["--find", "--show", file] })).stdout.trim();
    try {
      const commands: Command[] = [];
      const counting: Runner = (command, options) => {
        commands.push(command);
        return run(command, options);
      };
      const keys: KeySource = { kind: "test", getKey: () => Promise.reject(new Error("no key needed")), probe: () => Promise.resolve(), close: () => Promise.resolve() };
      const luks = new LuksDevices({ run: counting, keys, bypassWorkqueues: false });
      expect(await luks.checkHeader(loop, undefined)).toEqual({ violations: [], integrity: false });
      expect(await luks.inspectHeader(loop, undefined)).toEqual(checkHeader(await luksDumpJson(loop)));
      expect(commands).toEqual([]);
    } finally {
      await run({ file: "losetup", args: ["--detach", loop] });
    }
  });

  it("sees a header changed through the backing file while the device is held open (direct I/O, not a stale page cache)", async () => {
    const file = await newDisk("held-open");
    await formatCloak(file);
    const loop = (await run({ file: "losetup", args: ["--find", "--show", file] })).stdout.trim();
    // A dm-crypt mapping keeps its disk open like this, and with it the disk's page cache.
    const holder = await open(loop, "r");
    try {
      await holder.read(Buffer.alloc(32768), 0, 32768, 0);
      expect(headerVerdict(await readHeaderArea(loop)).violations).toEqual([]);
      await writeFile(`${file}.key2`, randomBytes(32));
      await run({ file: "cryptsetup", args: ["luksAddKey", "--batch-mode", ...cheapKdf, "--key-file", keyFile, file, `${file}.key2`] });
      expect(headerVerdict(await readHeaderArea(loop)).violations).toContain("expected exactly one keyslot, found 2");
    } finally {
      await holder.close();
      await run({ file: "losetup", args: ["--detach", loop] });
    }
  });
});

describe("damaged or differing copies on a real device: what an interrupted write leaves does not wedge the volume", () => {
  it("a damaged secondary: the primary is used, as cryptsetup uses it, and cryptsetup's next load restores the secondary", async () => {
    const file = await newDisk("damaged");
    await formatCloak(file);
    const handle = await open(file, "r+");
    await handle.write(Buffer.from([0xff]), 0, 1, 16384 + 200);
    await handle.close();
    const parsed = parseHeaderArea(await readHeaderArea(file));
    expect(parsed).toMatchObject({ ok: true, header: { copy: "primary" } });
    expect(parsed.problems.join("; ")).toMatch(/secondary LUKS2 header \(at byte 16384\) fails its sha256 checksum/);
    expect(headerVerdict(await readHeaderArea(file))).toEqual({ violations: [], integrity: false });
    await run({ file: "cryptsetup", args: ["repair", "--batch-mode", file] });
    expect(parseHeaderArea(await readHeaderArea(file))).toMatchObject({ ok: true, problems: [] });
  });

  it("a label change cut off between the two copies: the newer copy is used, and it is the one cryptsetup keeps", async () => {
    const file = await newDisk("torn-label");
    await formatCloak(file);
    const before = (await readFile(file)).subarray(0, 32768);
    await run(cryptsetup.setLabel(file, "in-use"));
    const handle = await open(file, "r+");
    await handle.write(before, 16384, 16384, 16384); // the secondary as it was before the change
    await handle.close();
    const parsed = parseHeaderArea(await readHeaderArea(file));
    expect(parsed).toMatchObject({ ok: true, header: { copy: "primary", label: "in-use", seqid: 4n } });
    expect(parsed.problems.join("; ")).toMatch(/secondary LUKS2 header is older than the primary \(seqid "4" and "3"; label "in-use" and "fresh"\)/);
    expect(headerVerdict(await readHeaderArea(file))).toEqual({ violations: [], integrity: false });
    await run({ file: "cryptsetup", args: ["repair", "--batch-mode", file] });
    expect(parseHeaderArea(await readHeaderArea(file))).toMatchObject({ ok: true, problems: [], header: { label: "in-use", seqid: 4n } });
  });

  it("two valid copies that differ under one seqid (no interrupted write does that): refused", async () => {
    const file = await newDisk("same-seqid");
    await formatCloak(file);
    const area = await readFile(file);
    const handle = await open(file, "r+");
    // The secondary's label field changed and its checksum recomputed: valid, same seqid, different.
    const secondary = Buffer.from(area.subarray(16384, 32768));
    secondary.fill(0, 24, 72);
    secondary.write("in-use", 24, "latin1");
    secondary.fill(0, 448, 512);
    createHash("sha256").update(secondary).digest().copy(secondary, 448);
    await handle.write(secondary, 0, secondary.length, 16384);
    await handle.close();
    expect(headerVerdict(await readHeaderArea(file)).violations[0]).toMatch(/headers differ \(label "fresh" and "in-use"\), which no interrupted write/);
  });
});
