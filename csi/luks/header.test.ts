import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { gunzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { FIRST_READ_BYTES, headerAreaBytes, headerVerdict, parseHeaderArea, type Luks2Header } from "./header.js";
import { checkHeader } from "./policy.js";

// Headers written by cryptsetup 2.6.1 (testdata/headers/generate.sh): the first 2 × hdr_size
// bytes of each device, and what `cryptsetup luksDump --dump-json-metadata` made of the whole
// device (its JSON, and whether loading the header rewrote a copy).
const dir = new URL("testdata/headers/", import.meta.url);

interface CryptsetupRecord {
  readonly exitCode: number;
  readonly repaired: boolean;
  readonly metadata: unknown;
}

function area(name: string): Buffer {
  return gunzipSync(readFileSync(new URL(`${name}.bin.gz`, dir)));
}

function cryptsetupSaw(name: string): CryptsetupRecord {
  return JSON.parse(readFileSync(new URL(`${name}.cryptsetup.json`, dir), "utf8")) as CryptsetupRecord;
}

function parsed(name: string): Luks2Header {
  const result = parseHeaderArea(area(name));
  if (!result.ok) throw new Error(`${name}: ${result.problems.join("; ")}`);
  return result.header;
}

/** The JSON object of one copy, read straight from the fixture (for "which copy did cryptsetup use"). */
function copyJson(bytes: Buffer, offset: number, size: number): unknown {
  const json = bytes.subarray(offset + 4096, offset + size);
  return JSON.parse(json.subarray(0, json.indexOf(0)).toString("utf8"));
}

/** Recomputes a copy's checksum, so that a test edit reaches the checks behind it. */
function rechecksum(bytes: Buffer, offset: number, size = 16384): Buffer {
  bytes.fill(0, offset + 448, offset + 512);
  createHash("sha256").update(bytes.subarray(offset, offset + size)).digest().copy(bytes, offset + 448);
  return bytes;
}

/** Rewrites the JSON text of both copies (padded with NULs) and their checksums. */
function withJson(bytes: Buffer, text: Buffer): Buffer {
  const copy = Buffer.from(bytes);
  for (const offset of [0, 16384]) {
    copy.fill(0, offset + 4096, offset + 16384);
    text.copy(copy, offset + 4096);
    rechecksum(copy, offset);
  }
  return copy;
}

const GOOD = ["plain", "in-use", "integrity", "metadata-64k"] as const;
const POLICY_VIOLATIONS = ["cipher-null", "extra-keyslot", "token"] as const;

describe("headers cryptsetup wrote, read as luksDump reads them", () => {
  it.each([...GOOD, ...POLICY_VIOLATIONS])("%s: the same JSON metadata as luksDump, and the same verdict", (name) => {
    const saw = cryptsetupSaw(name);
    expect(saw).toMatchObject({ exitCode: 0, repaired: false });
    const header = parsed(name);
    expect(header.metadata).toEqual(saw.metadata);
    expect(headerVerdict(area(name))).toEqual(checkHeader(saw.metadata));
  });

  it("accepts cloak's header and reads its binary fields", () => {
    const header = parsed("plain");
    expect(headerVerdict(area("plain"))).toEqual({ violations: [], integrity: false });
    expect(header).toMatchObject({ hdrSize: 16384, label: "fresh", subsystem: "cloak", seqid: 3n });
    expect(header.uuid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(parsed("in-use")).toMatchObject({ label: "in-use", subsystem: "cloak", seqid: 4n, uuid: header.uuid });
  });

  it("reports an integrity header as one", () => {
    expect(headerVerdict(area("integrity"))).toEqual({ violations: [], integrity: true });
  });

  it("reads a header larger than the default 16 KiB (64 KiB: its secondary at 64 KiB)", () => {
    expect(parsed("metadata-64k").hdrSize).toBe(65536);
    expect(headerVerdict(area("metadata-64k"))).toEqual({ violations: [], integrity: false });
  });

  it.each([
    ["cipher-null", /segment cipher is "cipher_null-ecb"/],
    ["extra-keyslot", /exactly one keyslot, found 2/],
    ["token", /expected no tokens, found 1/],
  ])("refuses %s by policy", (name, violation) => {
    expect(headerVerdict(area(name)).violations.join("; ")).toMatch(violation);
  });
});

describe("headers whose copies are damaged or differ: cloak takes the copy cryptsetup uses, and checks every valid copy", () => {
  it.each([
    ["primary-checksum", /primary LUKS2 header \(at byte 0\) fails its sha256 checksum/, "secondary"],
    ["checksum-field", /primary LUKS2 header \(at byte 0\) fails its sha256 checksum/, "secondary"],
    ["primary-edited", /primary LUKS2 header \(at byte 0\) fails its sha256 checksum/, "secondary"],
    ["secondary-checksum", /secondary LUKS2 header \(at byte 16384\) fails its sha256 checksum/, "primary"],
    ["no-secondary", /secondary LUKS2 header \(at byte 16384\) is missing/, "primary"],
    ["stale-secondary", /secondary LUKS2 header is older than the primary \(seqid "4" and "3"; label "in-use" and "fresh"\)/, "primary"],
    ["stale-primary", /primary LUKS2 header is older than the secondary \(seqid "3" and "4"; label "fresh" and "in-use"\)/, "secondary"],
  ])("%s (what an interrupted write leaves): accepted, as cryptsetup uses the %s copy and rewrites the other", (name, problem, used) => {
    const saw = cryptsetupSaw(name);
    expect(saw).toMatchObject({ exitCode: 0, repaired: true });
    expect(saw.metadata).toEqual(copyJson(area(name), used === "primary" ? 0 : 16384, 16384));

    const result = parseHeaderArea(area(name));
    if (!result.ok) throw new Error(`${name}: ${result.problems.join("; ")}`);
    expect(result.header.copy).toBe(used);
    expect(result.header.metadata).toEqual(saw.metadata);
    expect(result.problems.join("; ")).toMatch(problem);
    expect(headerVerdict(area(name))).toEqual({ violations: [], integrity: false });
  });

  it("swapped-secondary-newer: refused, because cryptsetup would open the newer copy, which is cipher_null", () => {
    const saw = cryptsetupSaw("swapped-secondary-newer");
    expect(checkHeader(saw.metadata).violations.join()).toMatch(/cipher_null/);
    const result = parseHeaderArea(area("swapped-secondary-newer"));
    expect(result).toMatchObject({ ok: true, header: { copy: "secondary", seqid: 5n } });
    expect(headerVerdict(area("swapped-secondary-newer")).violations.join("; ")).toMatch(/segment cipher is "cipher_null-ecb"/);
  });

  it("refuses a valid copy that fails the policy even when cryptsetup would use the other one", () => {
    // The stale-secondary pair with the roles swapped: the newer primary is cipher_null.
    const bytes = Buffer.from(area("swapped-secondary-newer"));
    const primary = Buffer.from(bytes.subarray(0, 16384));
    const secondary = Buffer.from(bytes.subarray(16384, 32768));
    // Each copy keeps its own magic and offset; only what they share moves across.
    const swapped = Buffer.concat([primary, secondary]);
    secondary.copy(swapped, 4096, 4096, 16384);
    primary.copy(swapped, 16384 + 4096, 4096, 16384);
    for (const [start, end] of [[16, 24], [24, 72], [208, 256]] as const) {
      secondary.copy(swapped, start, start, end);
      primary.copy(swapped, 16384 + start, start, end);
    }
    rechecksum(swapped, 0);
    rechecksum(swapped, 16384);
    const result = parseHeaderArea(swapped);
    expect(result).toMatchObject({ ok: true, header: { copy: "primary", seqid: 5n } });
    const violations = headerVerdict(swapped).violations.join("; ");
    expect(violations).toMatch(/segment cipher is "cipher_null-ecb"/);
    const older = Buffer.from(swapped);
    older.writeBigUInt64BE(2n, 16);
    rechecksum(older, 0);
    expect(parseHeaderArea(older)).toMatchObject({ ok: true, header: { copy: "secondary", seqid: 3n } });
    expect(headerVerdict(older).violations.join("; ")).toMatch(/the primary \(older\) copy: segment cipher is "cipher_null-ecb"/);
  });

  it("swapped-secondary-same-seqid: refused, where luksDump showed only the good primary and left the cipher_null secondary in place", () => {
    expect(headerVerdict(area("swapped-secondary-same-seqid")).violations.join("; ")).toMatch(
      /headers differ \(JSON metadata\), which no interrupted write by cryptsetup leaves behind/,
    );
    const saw = cryptsetupSaw("swapped-secondary-same-seqid");
    expect(saw).toMatchObject({ exitCode: 0, repaired: false });
    expect(checkHeader(saw.metadata)).toEqual({ violations: [], integrity: false });
    expect(copyJson(area("swapped-secondary-same-seqid"), 16384, 16384)).toMatchObject({ segments: { "0": { encryption: "cipher_null-ecb" } } });
  });

  it("refuses two valid copies of different volumes", () => {
    const bytes = Buffer.from(area("stale-secondary"));
    bytes.write("00000000-0000-4000-8000-000000000000", 16384 + 168, "latin1");
    rechecksum(bytes, 16384);
    expect(headerVerdict(bytes).violations.join("; ")).toMatch(/headers differ \(.*UUID .*\), which no interrupted write/);
  });

  it("refuses LUKS1, which luksDump --dump-json-metadata does not read either", () => {
    expect(headerVerdict(area("luks1")).violations).toEqual(["the primary LUKS2 header (at byte 0) has version 1, not 2 (a LUKS1 header)"]);
    expect(cryptsetupSaw("luks1").exitCode).toBe(1);
  });
});

describe("the rules cryptsetup applies to each copy", () => {
  const plain = area("plain");

  it("refuses a device that does not start with a LUKS header, without a repair hint", () => {
    expect(headerVerdict(Buffer.alloc(32768)).violations).toEqual([
      "the primary LUKS2 header (at byte 0) is missing: the device does not start with the LUKS magic",
    ]);
    expect(headerVerdict(Buffer.alloc(100)).violations).toEqual(["the primary LUKS2 header (at byte 0) is cut short: the device ends before it"]);
  });

  it("refuses a device that ends before or inside the secondary copy", () => {
    expect(headerVerdict(plain.subarray(0, 20000)).violations[0]).toBe("the secondary LUKS2 header (at byte 16384) is cut short: the device ends before it");
    expect(headerVerdict(plain.subarray(0, 24576)).violations[0]).toBe("the secondary LUKS2 header (at byte 16384) is cut short: the device ends inside it");
  });

  it("refuses a primary with a header size cryptsetup never writes (no known place for the secondary)", () => {
    const size = Buffer.from(plain);
    size.writeBigUInt64BE(20000n, 8);
    expect(headerVerdict(size).violations[0]).toMatch(/primary LUKS2 header \(at byte 0\) has header size 20000, not one of cryptsetup's/);
  });

  /** What parseHeaderArea says of the copies, whether or not it found one to use. */
  const problems = (bytes: Buffer): string => parseHeaderArea(bytes).problems.join("; ");

  it("does not use a copy moved from its place, and refuses when neither copy is usable", () => {
    const moved = rechecksum(Buffer.from(plain), 16384);
    moved.writeBigUInt64BE(4096n, 16384 + 256);
    rechecksum(moved, 16384);
    expect(problems(moved)).toMatch(/secondary LUKS2 header \(at byte 16384\) records offset 4096/);
    expect(parseHeaderArea(moved)).toMatchObject({ ok: true, header: { copy: "primary" } });
    moved.writeBigUInt64BE(4096n, 256);
    rechecksum(moved, 0);
    expect(headerVerdict(moved).violations[0]).toMatch(/primary LUKS2 header \(at byte 0\) records offset 4096/);
  });

  it("does not use a copy with a checksum algorithm other than sha256, and refuses when both have one", () => {
    const other = Buffer.from(plain);
    other.write("sha512\0", 72, "latin1");
    expect(problems(other)).toMatch(/primary LUKS2 header \(at byte 0\) has checksum algorithm "sha512"; cloak's headers use sha256/);
    expect(parseHeaderArea(other)).toMatchObject({ ok: true, header: { copy: "secondary" } });
    other.write("sha512\0", 16384 + 72, "latin1");
    expect(headerVerdict(other).violations.join("; ")).toMatch(/secondary LUKS2 header \(at byte 16384\) has checksum algorithm "sha512"/);
  });

  const text = (plain.subarray(4096, plain.indexOf(0, 4096))).toString("utf8");
  it.each([
    ["text after the object", Buffer.from(`${text} `), /with text after the JSON object/],
    ["bytes after the NUL", Buffer.concat([Buffer.from(text), Buffer.from("\0x")]), /with bytes after the JSON text/],
    ["no NUL", Buffer.alloc(12288, "{"), /without the NUL/],
    ["a leading space", Buffer.from(` ${text}`), /does not start with '\{'/],
    ["broken JSON", Buffer.from(text.slice(0, -1) + ",}"), /is not valid JSON/],
    ["an array", Buffer.from("[]"), /does not start with '\{'/],
    ["the wrong json_size", Buffer.from(text.replace('"json_size":"12288"', '"json_size":"28672"')), /config.json_size is "28672", not the area's 12288/],
  ])("refuses a JSON area with %s", (_, json, problem) => {
    expect(headerVerdict(withJson(plain, json)).violations.join("; ")).toMatch(problem);
  });

  it("accepts equal copies rewritten with the same JSON (the test's checksums agree with cryptsetup's)", () => {
    expect(headerVerdict(withJson(plain, Buffer.from(text)))).toEqual({ violations: [], integrity: false });
  });

  it("says how much to read: both copies of the size the primary records", () => {
    expect(FIRST_READ_BYTES).toBe(32768);
    expect(headerAreaBytes(plain.subarray(0, FIRST_READ_BYTES))).toBe(32768);
    expect(headerAreaBytes(area("metadata-64k").subarray(0, FIRST_READ_BYTES))).toBe(131072);
    expect(headerAreaBytes(Buffer.alloc(FIRST_READ_BYTES))).toBe(FIRST_READ_BYTES);
    expect(headerAreaBytes(area("luks1"))).toBe(4096);
  });
});

it("every fixture is tested", () => {
  const tested = new Set<string>([
    ...GOOD, ...POLICY_VIOLATIONS, "primary-checksum", "checksum-field", "primary-edited", "secondary-checksum", "no-secondary",
    "stale-secondary", "stale-primary", "swapped-secondary-newer", "swapped-secondary-same-seqid", "luks1",
  ]);
  const fixtures = readdirSync(dir).filter((f) => f.endsWith(".bin.gz")).map((f) => f.replace(/\.bin\.gz$/, ""));
  expect(fixtures.sort()).toEqual([...tested].sort());
});
