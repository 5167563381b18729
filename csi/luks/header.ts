import { createHash } from "node:crypto";
import { checkHeader, type HeaderVerdict } from "./policy.js";

/**
 * A LUKS2 header read from its bytes, without cryptsetup: both copies of the binary header and
 * JSON area (cryptsetup's docs/on-disk-format-luks2.pdf and lib/luks2/luks2_disk_metadata.c),
 * each checked the way cryptsetup checks it before use — magic, version, offset, size, the
 * SHA-256 checksum over the binary header (checksum field zeroed) and the whole JSON area, and
 * a JSON area holding one NUL-terminated object followed only by zeros — and then the two
 * compared. Pure: a function of the bytes at the start of the device (header-read.ts reads them).
 *
 * Where the copies are not both valid and equal, cryptsetup picks one and rewrites the other
 * the next time it writes the header: a damaged copy is restored from the valid one, and of two
 * valid copies it uses the one with the higher seqid. That is also how it survives its own
 * interrupted writes (each update writes one copy, then the other, with the seqid raised), so a
 * node that died during a label change or a format must not leave the volume refused. cloak
 * therefore takes the copy cryptsetup will use, and requires EVERY valid copy to pass the
 * policy: the checksums are unkeyed (anyone who can write the disk can write a copy that checks
 * out, such as a newer secondary with `cipher_null`), and a copy cryptsetup might open — by its
 * choice or after a repair — must never be one cloak would refuse. Refused outright, as no
 * interrupted write by cryptsetup produces them: two valid copies of different volumes
 * (UUIDs), and two valid copies that differ under the same seqid.
 */

/** The binary header: magic, counters, labels, salt, checksum; the JSON area follows it. */
export const BINARY_HEADER_BYTES = 4096;
/** The header sizes (binary header + JSON area) cryptsetup writes: 16 KiB to 4 MiB, powers of two. */
export const HEADER_SIZES: readonly number[] = Array.from({ length: 9 }, (_, i) => 16384 << i);
/** Both copies of a header of the smallest (and default) size: what one read fetches. */
export const FIRST_READ_BYTES = 2 * 16384;

const MAGIC = { primary: Buffer.from("LUKS\xba\xbe", "latin1"), secondary: Buffer.from("SKUL\xba\xbe", "latin1") };
/** Byte ranges of struct luks2_hdr_disk (big-endian integers, NUL-padded strings). */
const FIELD = {
  magic: [0, 6],
  version: [6, 8],
  hdrSize: [8, 16],
  seqid: [16, 24],
  label: [24, 72],
  checksumAlg: [72, 104],
  salt: [104, 168],
  uuid: [168, 208],
  subsystem: [208, 256],
  hdrOffset: [256, 264],
  checksum: [448, 512],
} as const satisfies Record<string, readonly [number, number]>;
/** What differs between the two copies by design: each has its own magic, offset, salt and checksum. */
const PER_COPY_FIELDS = [FIELD.magic, FIELD.salt, FIELD.hdrOffset, FIELD.checksum] as const;
const CHECKSUM_ALG = "sha256";
const SHA256_BYTES = 32;

type Which = "primary" | "secondary";

export interface Luks2Header {
  /** Which copy this is. */
  readonly copy: Which;
  readonly hdrSize: number;
  readonly seqid: bigint;
  readonly label: string;
  readonly subsystem: string;
  readonly uuid: string;
  /** The JSON area, parsed: what `cryptsetup luksDump --dump-json-metadata` prints. */
  readonly metadata: unknown;
}

export type HeaderParse =
  | {
      readonly ok: true;
      /** The copy cryptsetup uses. */
      readonly header: Luks2Header;
      /** Every valid copy, `header` first; one when the copies are equal or the other is damaged. */
      readonly copies: readonly Luks2Header[];
      /** What is wrong with the other copy, if anything: cryptsetup rewrites it at its next write. */
      readonly problems: readonly string[];
    }
  | { readonly ok: false; readonly problems: readonly string[] };

/**
 * How many bytes from the start of the device hold both copies of the header that `start`
 * (the device's first bytes) begins: 2 × hdr_size when the primary's size field can be
 * trusted that far, else `start.length` (there is nothing more worth reading).
 */
export function headerAreaBytes(start: Uint8Array): number {
  const bytes = Buffer.from(start.buffer, start.byteOffset, start.byteLength);
  if (!isLuks2(bytes)) return bytes.length;
  const size = hdrSize(bytes, 0);
  return size === undefined ? bytes.length : Math.max(bytes.length, 2 * size);
}

/** Both copies parsed, checked and compared; `area` is the device from offset 0, both copies long. */
export function parseHeaderArea(area: Uint8Array): HeaderParse {
  const bytes = Buffer.from(area.buffer, area.byteOffset, area.byteLength);
  const primary = parseCopy(bytes, 0, "primary");
  if (!isLuks2(bytes)) return { ok: false, problems: primary.problems };
  // Without a sound primary binary header there is no size, and so no known place for the
  // secondary (cryptsetup would then scan every possible offset for it): refused.
  if (!primary.located) return { ok: false, problems: primary.problems };
  const secondary = parseCopy(bytes, primary.hdrSize, "secondary");
  const problems = [...primary.problems, ...secondary.problems];
  // A device too small to hold both copies is no interrupted write: cryptsetup never made it.
  if (bytes.length < 2 * primary.hdrSize) return { ok: false, problems };
  const valid = [primary, secondary].flatMap((c) => (c.located && c.header ? [c.header] : []));
  const [first, second] = valid;
  if (!first) return { ok: false, problems: [...problems, REPAIR_HINT] };
  if (!second) return { ok: true, header: first, copies: [first], problems };
  const difference = differences(bytes, first, second);
  if (difference.length === 0) return { ok: true, header: first, copies: [first], problems };
  if (first.uuid !== second.uuid || first.seqid === second.seqid) {
    return {
      ok: false,
      problems: [`the primary and secondary LUKS2 headers differ (${difference.join("; ")}), which no interrupted write by cryptsetup leaves behind`, REPAIR_HINT],
    };
  }
  const [newer, older] = first.seqid > second.seqid ? [first, second] : [second, first];
  return {
    ok: true,
    header: newer,
    copies: [newer, older],
    problems: [`the ${older.copy} LUKS2 header is older than the ${newer.copy} (${difference.join("; ")}): an interrupted header write, which cryptsetup completes at its next write`],
  };
}

const REPAIR_HINT =
  "cloak never repairs a LUKS2 header: find out why it changed, then restore a header backup or let `cryptsetup repair` rewrite the damaged or older copy";

/**
 * The policy verdict on a header's bytes: its structure first, then checkHeader on the JSON of
 * every valid copy (see above: whichever cryptsetup opens must pass).
 */
export function headerVerdict(area: Uint8Array): HeaderVerdict {
  const parsed = parseHeaderArea(area);
  if (!parsed.ok) return { violations: parsed.problems, integrity: false };
  const [used, other] = parsed.copies.map((copy) => checkHeader(copy.metadata));
  const verdict = used ?? { violations: [], integrity: false };
  if (!other || other.violations.length === 0) return verdict;
  const older = parsed.copies[1]?.copy ?? "older";
  return { ...verdict, violations: [...verdict.violations, ...other.violations.map((v) => `the ${older} (older) copy: ${v}`)] };
}

type CopyParse =
  | { readonly located: false; readonly problems: string[] }
  | { readonly located: true; readonly hdrSize: number; readonly problems: string[]; readonly header?: Luks2Header };

function parseCopy(bytes: Buffer, offset: number, which: Which): CopyParse {
  const where = `the ${which} LUKS2 header (at byte ${offset})`;
  const fail = (problem: string): CopyParse => ({ located: false, problems: [`${where} ${problem}`] });
  if (bytes.length < offset + BINARY_HEADER_BYTES) return fail("is cut short: the device ends before it");
  if (!hasMagic(bytes, offset, which)) {
    return fail(which === "primary" ? "is missing: the device does not start with the LUKS magic" : "is missing: no secondary magic where the primary's size puts it");
  }
  // LUKS1 shares the primary's magic; its version field says which it is.
  const version = bytes.readUInt16BE(offset + FIELD.version[0]);
  if (version !== 2) return fail(`has version ${version}, not 2${version === 1 ? " (a LUKS1 header)" : ""}`);
  const size = hdrSize(bytes, offset);
  if (size === undefined) {
    return fail(`has header size ${bytes.readBigUInt64BE(offset + FIELD.hdrSize[0])}, not one of cryptsetup's (16 KiB to 4 MiB, powers of two)`);
  }
  const recordedOffset = bytes.readBigUInt64BE(offset + FIELD.hdrOffset[0]);
  if (recordedOffset !== BigInt(offset)) return fail(`records offset ${recordedOffset}: it was moved or copied from elsewhere`);
  if (which === "secondary" && size !== offset) return fail(`has header size ${size}, not the primary's ${offset}`);

  const broken = (problem: string): CopyParse => ({ located: true, hdrSize: size, problems: [`${where} ${problem}`] });
  if (bytes.length < offset + size) return broken("is cut short: the device ends inside it");
  const checksumAlg = text(bytes, offset, FIELD.checksumAlg);
  if (checksumAlg !== CHECKSUM_ALG) return broken(`has checksum algorithm ${JSON.stringify(checksumAlg)}; cloak's headers use sha256`);

  const binary = Buffer.from(bytes.subarray(offset, offset + BINARY_HEADER_BYTES));
  const stored = Buffer.from(binary.subarray(FIELD.checksum[0], FIELD.checksum[0] + SHA256_BYTES));
  binary.fill(0, FIELD.checksum[0], FIELD.checksum[1]);
  const json = bytes.subarray(offset + BINARY_HEADER_BYTES, offset + size);
  const computed = createHash("sha256").update(binary).update(json).digest();
  if (!computed.equals(stored)) return broken("fails its sha256 checksum: damaged, or changed by something other than cryptsetup");

  const metadata = parseJsonArea(json, size);
  if (typeof metadata === "string") return broken(`has a JSON area ${metadata}`);
  return {
    located: true,
    hdrSize: size,
    problems: [],
    header: {
      copy: which,
      hdrSize: size,
      seqid: bytes.readBigUInt64BE(offset + FIELD.seqid[0]),
      label: text(bytes, offset, FIELD.label),
      subsystem: text(bytes, offset, FIELD.subsystem),
      uuid: text(bytes, offset, FIELD.uuid),
      metadata,
    },
  };
}

/**
 * The JSON object in a JSON area, or what is wrong with the area. cryptsetup's rules: it starts
 * with `{`, one JSON object ends before a NUL, everything after is NUL, and the config section
 * records the area's size.
 */
function parseJsonArea(json: Buffer, hdrSizeBytes: number): Record<string, unknown> | string {
  if (json[0] !== 0x7b) return "that does not start with '{'";
  const end = json.indexOf(0);
  if (end < 0) return "without the NUL that ends the JSON text";
  if (!json.subarray(end).equals(Buffer.alloc(json.length - end))) return "with bytes after the JSON text";
  let parsed: unknown;
  try {
    const source = new TextDecoder("utf-8", { fatal: true }).decode(json.subarray(0, end));
    // json-c stops at the end of the first value, and the byte after it must be the NUL.
    if (!source.endsWith("}")) return "with text after the JSON object";
    parsed = JSON.parse(source);
  } catch (err) {
    return `that is not valid JSON (${err instanceof Error ? err.message : String(err)})`;
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) return "that does not hold a JSON object";
  const metadata = parsed as Record<string, unknown>;
  const config = metadata["config"];
  const jsonSize = typeof config === "object" && config !== null ? (config as Record<string, unknown>)["json_size"] : undefined;
  if (jsonSize !== String(hdrSizeBytes - BINARY_HEADER_BYTES)) {
    return `whose config.json_size is ${JSON.stringify(jsonSize ?? null)}, not the area's ${hdrSizeBytes - BINARY_HEADER_BYTES}`;
  }
  return metadata;
}

/** What differs between two valid copies, in words; empty when they are the same header. */
function differences(bytes: Buffer, primary: Luks2Header, secondary: Luks2Header): string[] {
  const found: string[] = [];
  const field = (name: string, a: string | bigint, b: string | bigint): void => {
    if (a !== b) found.push(`${name} ${JSON.stringify(String(a))} and ${JSON.stringify(String(b))}`);
  };
  field("seqid", primary.seqid, secondary.seqid);
  field("UUID", primary.uuid, secondary.uuid);
  field("label", primary.label, secondary.label);
  field("subsystem", primary.subsystem, secondary.subsystem);
  const size = primary.hdrSize;
  if (found.length === 0 && !sharedBinary(bytes, 0).equals(sharedBinary(bytes, size))) found.push("other bytes of the binary headers");
  if (!bytes.subarray(BINARY_HEADER_BYTES, size).equals(bytes.subarray(size + BINARY_HEADER_BYTES, 2 * size))) found.push("JSON metadata");
  return found;
}

/** A copy's binary header with its per-copy fields (magic, salt, offset, checksum) zeroed. */
function sharedBinary(bytes: Buffer, offset: number): Buffer {
  const binary = Buffer.from(bytes.subarray(offset, offset + BINARY_HEADER_BYTES));
  for (const [start, end] of PER_COPY_FIELDS) binary.fill(0, start, end);
  return binary;
}

/** Whether the device starts with a LUKS2 primary magic and version, sound or not otherwise. */
function isLuks2(bytes: Buffer): boolean {
  return bytes.length >= BINARY_HEADER_BYTES && hasMagic(bytes, 0, "primary") && bytes.readUInt16BE(FIELD.version[0]) === 2;
}

function hasMagic(bytes: Buffer, offset: number, which: Which): boolean {
  return bytes.subarray(offset + FIELD.magic[0], offset + FIELD.magic[1]).equals(MAGIC[which]);
}

function hdrSize(bytes: Buffer, offset: number): number | undefined {
  const size = bytes.readBigUInt64BE(offset + FIELD.hdrSize[0]);
  return HEADER_SIZES.find((s) => BigInt(s) === size);
}

/** A NUL-terminated string field; cryptsetup ends each at its last byte whatever it holds. */
function text(bytes: Buffer, offset: number, [start, end]: readonly [number, number]): string {
  const field = bytes.subarray(offset + start, offset + end - 1);
  const nul = field.indexOf(0);
  return field.subarray(0, nul < 0 ? field.length : nul).toString("latin1");
}
