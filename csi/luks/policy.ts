/**
 * The one LUKS2 layout cloak creates and the only one it will open. Formatting (cryptsetup.ts)
 * and header validation (below) both read these values, so they cannot drift apart.
 */
export const LUKS_FORMAT = {
  type: "luks2",
  cipher: "aes-xts-plain64",
  /** XTS splits the key in two: 512 bits is AES-256. */
  keySizeBits: 512,
  /** Integrity adds a 256-bit HMAC key to the volume key. */
  integrityKeySizeBits: 512 + 256,
  /** 4 KiB sectors: a quarter of the IVs and crypto calls of 512-byte sectors. */
  sectorSize: 4096,
  /** dm-integrity's name for the authenticated mode cryptsetup calls "hmac-sha256". */
  integrity: "hmac(sha256)",
  integrityArgument: "hmac-sha256",
  hash: "sha256",
  /**
   * The keyslot passphrase is 256 random bits from the key service, not something a person
   * chose: no password guessing can succeed against it, so a slow or memory-hard KDF buys no
   * security and only costs every stage (argon2id at cryptsetup's defaults takes seconds and
   * up to 1 GiB). pbkdf2 at the smallest count cryptsetup accepts keeps the format intact and
   * the cost negligible.
   */
  pbkdf: "pbkdf2",
  pbkdfIterations: 1000,
  /** Every cloak header names its owner here; see LuksLabel for the label beside it. */
  subsystem: "cloak",
} as const;

/**
 * What the header label records about the volume's contents. A fresh volume may be given a
 * filesystem; one that was ever handed to a user may hold data even when no filesystem
 * signature is visible (a block volume), so it is never formatted again. "grow" is an in-use
 * volume copied onto a larger disk (a restore or clone to a bigger size): its filesystem is
 * grown at the next stage, then the label returns to "in-use". "wiping:N" is a fresh
 * integrity volume whose tags are initialised (written through dm-integrity) up to byte N of
 * the decrypted device; it becomes "fresh" once all of them are.
 */
export type LuksLabel = "fresh" | "in-use" | "grow" | `wiping:${number}`;

export function wipingLabel(bytes: number): LuksLabel {
  return `wiping:${bytes}`;
}

/** Bytes of the decrypted device whose integrity tags are initialised, when the label says a wipe is under way. */
export function wipedBytes(label: string | undefined): number | undefined {
  const match = /^wiping:(0|[1-9][0-9]{0,15})$/.exec(label ?? "");
  return match ? Number(match[1]) : undefined;
}

/** Labels of a volume that was never handed out. */
export function isNeverUsedLabel(label: string | undefined): boolean {
  return label === "fresh" || wipedBytes(label) !== undefined;
}

export interface HeaderVerdict {
  /** Empty when the header matches the policy. */
  readonly violations: readonly string[];
  /** Whether the data segment carries dm-integrity. */
  readonly integrity: boolean;
}

type Json = Record<string, unknown>;

/**
 * Checks the JSON metadata of a LUKS2 header (`cryptsetup luksDump --dump-json-metadata`)
 * against the format above. Anything else is refused: a header swapped for one with
 * `cipher_null`, a weak cipher, extra keyslots (a second way in), tokens, or an unfinished
 * reencryption. The check is strict by design; it runs before every open.
 */
export function checkHeader(metadata: unknown): HeaderVerdict {
  const violations: string[] = [];
  if (!isObject(metadata)) return { violations: ["header metadata is not a JSON object"], integrity: false };

  const segments = entries(metadata["segments"]);
  const segment = segments[0]?.[1];
  let integrity = false;
  if (segments.length !== 1 || !isObject(segment)) {
    violations.push(`expected exactly one data segment, found ${segments.length}`);
  } else {
    integrity = isObject(segment["integrity"]);
    expect(violations, "segment type", segment["type"], "crypt");
    expect(violations, "segment cipher", segment["encryption"], LUKS_FORMAT.cipher);
    expect(violations, "segment sector size", segment["sector_size"], LUKS_FORMAT.sectorSize);
    expect(violations, "segment size", segment["size"], "dynamic");
    if (integrity) {
      const spec = segment["integrity"] as Json;
      expect(violations, "segment integrity", spec["type"], LUKS_FORMAT.integrity);
    }
  }

  const keySize = (integrity ? LUKS_FORMAT.integrityKeySizeBits : LUKS_FORMAT.keySizeBits) / 8;
  const keyslots = entries(metadata["keyslots"]);
  const keyslot = keyslots[0]?.[1];
  if (keyslots.length !== 1 || !isObject(keyslot)) {
    violations.push(`expected exactly one keyslot, found ${keyslots.length}`);
  } else {
    expect(violations, "keyslot type", keyslot["type"], "luks2");
    expect(violations, "volume key size", keyslot["key_size"], keySize);
    const area = asObject(keyslot["area"]);
    expect(violations, "keyslot area type", area["type"], "raw");
    expect(violations, "keyslot cipher", area["encryption"], LUKS_FORMAT.cipher);
    expect(violations, "keyslot cipher key size", area["key_size"], LUKS_FORMAT.keySizeBits / 8);
    const kdf = asObject(keyslot["kdf"]);
    expect(violations, "keyslot KDF", kdf["type"], LUKS_FORMAT.pbkdf);
    expect(violations, "keyslot KDF hash", kdf["hash"], LUKS_FORMAT.hash);
    const af = asObject(keyslot["af"]);
    expect(violations, "keyslot anti-forensic splitter", af["type"], "luks1");
    expect(violations, "keyslot anti-forensic hash", af["hash"], LUKS_FORMAT.hash);
  }

  const digests = entries(metadata["digests"]);
  const digest = digests[0]?.[1];
  if (digests.length !== 1 || !isObject(digest)) {
    violations.push(`expected exactly one digest, found ${digests.length}`);
  } else {
    expect(violations, "digest type", digest["type"], "pbkdf2");
    expect(violations, "digest hash", digest["hash"], LUKS_FORMAT.hash);
    const slotId = keyslots[0]?.[0];
    const segmentId = segments[0]?.[0];
    if (slotId !== undefined && !includes(digest["keyslots"], slotId)) {
      violations.push(`the digest does not cover keyslot ${slotId}`);
    }
    if (segmentId !== undefined && !includes(digest["segments"], segmentId)) {
      violations.push(`the digest does not cover segment ${segmentId}`);
    }
  }

  const tokens = entries(metadata["tokens"]);
  if (tokens.length > 0) violations.push(`expected no tokens, found ${tokens.length}`);

  const requirements = asObject(asObject(metadata["config"])["requirements"]);
  if (Object.keys(requirements).length > 0) {
    violations.push(`the header carries requirements (${JSON.stringify(requirements)}), e.g. an unfinished reencryption`);
  }
  return { violations, integrity };
}

function expect(violations: string[], what: string, actual: unknown, wanted: string | number): void {
  if (actual !== wanted) violations.push(`${what} is ${JSON.stringify(actual ?? null)}, policy requires ${JSON.stringify(wanted)}`);
}

function isObject(value: unknown): value is Json {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function asObject(value: unknown): Json {
  return isObject(value) ? value : {};
}

function entries(value: unknown): [string, unknown][] {
  return isObject(value) ? Object.entries(value) : [];
}

function includes(list: unknown, id: string): boolean {
  return Array.isArray(list) && list.includes(id);
}

/**
 * Whether a header is one cloak began to write and never finished: luksFormat writes the header
 * first and the keyslot after it, so a kill in between leaves a header no key can open, with
 * the label cloak gives a new volume (`fresh`, or `wiping:0` for integrity), cloak's subsystem,
 * cloak's data segment, and no keyslot or token. Such a volume never held data and may be
 * formatted again; the caller also checks that its data area was never written. Anything else
 * with no keyslot (a volume in use whose keyslots someone removed, a foreign header) is not it.
 */
export function isUnfinishedFormat(metadata: unknown, header: { label: string | undefined; subsystem: string | undefined }): boolean {
  if (!isObject(metadata)) return false;
  if (header.subsystem !== LUKS_FORMAT.subsystem) return false;
  if (header.label !== "fresh" && header.label !== wipingLabel(0)) return false;
  if (entries(metadata["keyslots"]).length !== 0 || entries(metadata["tokens"]).length !== 0) return false;
  if (Object.keys(asObject(asObject(metadata["config"])["requirements"])).length > 0) return false;
  const segments = entries(metadata["segments"]);
  const segment = segments[0]?.[1];
  return (
    segments.length === 1 &&
    isObject(segment) &&
    segment["type"] === "crypt" &&
    segment["encryption"] === LUKS_FORMAT.cipher &&
    segment["sector_size"] === LUKS_FORMAT.sectorSize
  );
}

/** The data segment's offset in bytes, from the header's metadata. */
export function dataOffsetBytes(metadata: unknown): number | undefined {
  const segment = entries(asObject(metadata)["segments"])[0]?.[1];
  const offset = Number(asObject(segment)["offset"]);
  return Number.isSafeInteger(offset) && offset > 0 ? offset : undefined;
}
