import { createHmac, hkdfSync } from "node:crypto";
import { chmod, mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkDataKeyRequest, deriveDataKey, KeyMaterialError, masterKeyObject, readKeyMaterial } from "./data-key.js";
import { InvalidArgumentError } from "./errors.js";

/** RFC 5869 HKDF written from the RFC's two steps with HMAC-SHA256: the independent reference. */
function referenceHkdf(ikm: Buffer, salt: Buffer, info: Buffer, length: number): Buffer {
  const prk = createHmac("sha256", salt.length > 0 ? salt : Buffer.alloc(32)).update(ikm).digest();
  const blocks: Buffer[] = [];
  let previous = Buffer.alloc(0);
  for (let i = 1; Buffer.concat(blocks).length < length; i++) {
    previous = createHmac("sha256", prk).update(Buffer.concat([previous, info, Buffer.from([i])])).digest();
    blocks.push(previous);
  }
  return Buffer.concat(blocks).subarray(0, length);
}

const range = (from: number, to: number): Buffer => Buffer.from(Array.from({ length: to - from }, (_, i) => from + i));

// RFC 5869 appendix A, the SHA-256 cases.
const RFC5869 = [
  {
    name: "A.1 basic",
    ikm: Buffer.alloc(22, 0x0b),
    salt: range(0x00, 0x0d),
    info: range(0xf0, 0xfa),
    okm: "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
  },
  {
    name: "A.2 longer inputs and output",
    ikm: range(0x00, 0x50),
    salt: range(0x60, 0xb0),
    info: range(0xb0, 0x100),
    okm:
      "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71cc30c58179ec3e87c14c01d5c1f3434f1d87",
  },
  {
    name: "A.3 empty salt and info",
    ikm: Buffer.alloc(22, 0x0b),
    salt: Buffer.alloc(0),
    info: Buffer.alloc(0),
    okm: "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8",
  },
];

describe("HKDF-SHA256", () => {
  for (const v of RFC5869) {
    it(`matches RFC 5869 ${v.name} (Node's hkdf, which deriveDataKey uses, and the reference)`, () => {
      const length = v.okm.length / 2;
      expect(Buffer.from(hkdfSync("sha256", v.ikm, v.salt, v.info, length)).toString("hex")).toBe(v.okm);
      expect(referenceHkdf(v.ikm, v.salt, v.info, length).toString("hex")).toBe(v.okm);
    });
  }
});

describe("deriveDataKey", () => {
  const master = range(0x00, 0x20);
  const salt = range(0x20, 0x40);
  const id = "6ba7b810-9dad-11d1-80b4-00c04fd430c8";

  it("gives Constellation's key for the same master secret, salt and id (info = \"key-\" + id)", () => {
    // Computed outside Node with `openssl kdf -keylen 32 -kdfopt digest:SHA256 -kdfopt hexkey:00..1f
    // -kdfopt hexsalt:20..3f -kdfopt info:key-<id> HKDF`, and again here by the reference HKDF.
    const expected = "fe5984dd29a2bbf4c84d698c73de8fb400299fe0a3b71594dce3e4683b58fa95";
    expect(deriveDataKey(master, salt, id, 32).toString("hex")).toBe(expected);
    expect(referenceHkdf(master, salt, Buffer.from(`key-${id}`), 32).toString("hex")).toBe(expected);
    // A longer key is the same stream, longer: HKDF's output is a prefix of any longer output.
    expect(deriveDataKey(master, salt, id, 64).toString("hex").startsWith(expected)).toBe(true);
  });

  it("gives the same keys from a master-secret KeyObject", () => {
    expect(deriveDataKey(masterKeyObject(master), salt, id, 32).equals(deriveDataKey(master, salt, id, 32))).toBe(true);
  });

  it("is deterministic per id and separates ids and salts", () => {
    const a = deriveDataKey(master, salt, id, 32);
    expect(deriveDataKey(master, salt, id, 32).equals(a)).toBe(true);
    expect(deriveDataKey(master, salt, `${id}x`, 32).equals(a)).toBe(false);
    expect(deriveDataKey(master, salt, "other", 32).equals(a)).toBe(false);
    expect(deriveDataKey(master, range(0x21, 0x41), id, 32).equals(a)).toBe(false);
    expect(deriveDataKey(range(0x01, 0x21), salt, id, 32).equals(a)).toBe(false);
    expect(deriveDataKey(master, salt, id, 16)).toHaveLength(16);
    expect(deriveDataKey(master, salt, id, 64)).toHaveLength(64);
  });

  it.each([
    ["", 32, /empty/],
    ["a".repeat(257), 32, /longer than 256/],
    ["a b", 32, /may only contain/],
    ["a/b", 32, /may only contain/],
    ["../x", 32, /may only contain/],
    ["a\nb", 32, /may only contain/],
    ["abc\n", 32, /may only contain/],
    ["é", 32, /may only contain/],
    ["ok", 15, /16\.\.64/],
    ["ok", 65, /16\.\.64/],
    ["ok", 0, /16\.\.64/],
    ["ok", 16.5, /16\.\.64/],
  ])("refuses id %j with length %d as InvalidArgument", (keyId, length, message) => {
    expect(() => checkDataKeyRequest(keyId, length)).toThrow(InvalidArgumentError);
    expect(() => deriveDataKey(master, salt, keyId, length)).toThrow(message);
  });

  it("accepts the whole allowed alphabet and exactly 256 bytes", () => {
    expect(() => checkDataKeyRequest("AZaz09._:-", 16)).not.toThrow();
    expect(() => checkDataKeyRequest("a".repeat(256), 64)).not.toThrow();
  });
});

describe("readKeyMaterial", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "cloak-ks-datakey-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const file = async (name: string, bytes: Buffer, mode: number): Promise<string> => {
    const path = join(dir, name);
    await writeFile(path, bytes, { mode });
    await chmod(path, mode);
    return path;
  };

  it("reads a private file of at least 32 bytes, also through a symlink (Secret volumes)", async () => {
    const path = await file("good", range(0, 40), 0o400);
    expect((await readKeyMaterial(path, "salt")).equals(range(0, 40))).toBe(true);
    await mkdir(join(dir, "..data"));
    await file("..data/master-secret", range(1, 33), 0o440);
    await symlink("..data/master-secret", join(dir, "linked"));
    expect(await readKeyMaterial(join(dir, "linked"), "master secret")).toHaveLength(32);
  });

  it("refuses missing, short, world-readable and non-regular files with a message naming them", async () => {
    await expect(readKeyMaterial(join(dir, "absent"), "master secret")).rejects.toThrow(
      new KeyMaterialError(`master secret file ${join(dir, "absent")} cannot be read (ENOENT)`),
    );
    const short = await file("short", range(0, 31), 0o400);
    await expect(readKeyMaterial(short, "salt")).rejects.toThrow(/holds 31 bytes; at least 32/);
    const open = await file("open", range(0, 32), 0o644);
    await expect(readKeyMaterial(open, "salt")).rejects.toThrow(/world-readable \(mode 644\)/);
    await mkdir(join(dir, "adir"), { mode: 0o700 });
    await expect(readKeyMaterial(join(dir, "adir"), "salt")).rejects.toThrow(/not a regular file/);
  });
});
