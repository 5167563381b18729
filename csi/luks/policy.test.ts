import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { checkHeader, dataOffsetBytes, isNeverUsedLabel, isUnfinishedFormat, wipedBytes, wipingLabel } from "./policy.js";

// Headers dumped with `cryptsetup luksDump --dump-json-metadata` from real devices formatted
// with cryptsetup 2.6 (cloak's own format and the variants an attacker or another tool could
// leave); cipher-null.json and integrity-hand-made.json are edits of cloak-default.json,
// because cryptsetup needs device-mapper to write those.
function fixture(name: string): unknown {
  return JSON.parse(readFileSync(new URL(`testdata/${name}.json`, import.meta.url), "utf8"));
}

describe("checkHeader", () => {
  it("accepts the header cloak formats", () => {
    expect(checkHeader(fixture("cloak-default"))).toEqual({ violations: [], integrity: false });
  });

  it("accepts an integrity header and reports it", () => {
    expect(checkHeader(fixture("integrity-hand-made"))).toEqual({ violations: [], integrity: true });
  });

  it.each([
    ["cipher-null", /segment cipher is "cipher_null-ecb"/],
    ["cipher-null", /keyslot cipher is "cipher_null-ecb"/],
    ["aes-cbc", /segment cipher is "aes-cbc-essiv:sha256"/],
    ["aes-cbc", /volume key size is 32/],
    ["sector-512", /segment sector size is 512/],
    ["argon2id", /keyslot KDF is "argon2id"/],
    ["extra-keyslot", /exactly one keyslot, found 2/],
    ["token", /expected no tokens, found 1/],
  ])("refuses %s: %s", (name, violation) => {
    const verdict = checkHeader(fixture(name));
    expect(verdict.violations.some((v) => violation.test(v)), verdict.violations.join("; ")).toBe(true);
  });

  it("refuses an integrity segment with a key too short for it", () => {
    const header = fixture("integrity-hand-made") as { keyslots: Record<string, { key_size: number }> };
    header.keyslots["0"]!.key_size = 64;
    expect(checkHeader(header).violations).toContain("volume key size is 64, policy requires 96");
  });

  it("refuses an unfinished reencryption", () => {
    const header = fixture("cloak-default") as { config: Record<string, unknown> };
    header.config["requirements"] = { mandatory: ["online-reencrypt-v2"] };
    expect(checkHeader(header).violations.join()).toMatch(/requirements/);
  });

  it("refuses a digest that does not cover the keyslot", () => {
    const header = fixture("cloak-default") as { digests: Record<string, { keyslots: string[] }> };
    header.digests["0"]!.keyslots = ["7"];
    expect(checkHeader(header).violations).toContain("the digest does not cover keyslot 0");
  });

  it.each([null, 42, "text", [], {}])("refuses malformed metadata %j", (metadata) => {
    expect(checkHeader(metadata).violations.length).toBeGreaterThan(0);
  });
});

describe("isUnfinishedFormat", () => {
  /** cloak's header after luksErase: what a kill between header and keyslot writes leaves. */
  function cutOff(): Record<string, unknown> {
    const header = fixture("cloak-default") as Record<string, unknown>;
    return { ...header, keyslots: {}, digests: { "0": { ...(header["digests"] as Record<string, object>)["0"], keyslots: [] } } };
  }
  const cloaks = { label: "fresh", subsystem: "cloak" };

  it("recognises a header cloak wrote and gave no keyslot", () => {
    expect(isUnfinishedFormat(cutOff(), cloaks)).toBe(true);
    expect(isUnfinishedFormat(cutOff(), { label: "wiping:0", subsystem: "cloak" })).toBe(true);
  });

  it.each([
    ["a header with its keyslot", fixture("cloak-default"), cloaks],
    ["a volume that was in use", cutOff(), { label: "in-use", subsystem: "cloak" }],
    ["an integrity wipe under way", cutOff(), { label: "wiping:4096", subsystem: "cloak" }],
    ["another subsystem's header", cutOff(), { label: "fresh", subsystem: "other" }],
    ["no label", cutOff(), { label: undefined, subsystem: "cloak" }],
    ["a token", { ...cutOff(), tokens: { "0": { type: "x" } } }, cloaks],
    ["another cipher", { ...cutOff(), segments: { "0": { type: "crypt", offset: "16777216", size: "dynamic", encryption: "cipher_null-ecb", sector_size: 4096 } } }, cloaks],
    ["malformed metadata", null, cloaks],
  ])("does not take %s for one", (_name, metadata, header) => {
    expect(isUnfinishedFormat(metadata, header)).toBe(false);
  });

  it("reads the data segment's offset", () => {
    expect(dataOffsetBytes(fixture("cloak-default"))).toBe(16 * 1024 * 1024);
    expect(dataOffsetBytes({})).toBeUndefined();
  });
});

describe("wipe labels", () => {
  it("round-trip the bytes wiped", () => {
    expect(wipedBytes(wipingLabel(33554432))).toBe(33554432);
    expect(wipedBytes("fresh")).toBeUndefined();
    expect(isNeverUsedLabel("wiping:0")).toBe(true);
    expect(isNeverUsedLabel("in-use")).toBe(false);
  });
  it.each(["wiping:", "wiping:-1", "wiping:01", "wiping:1.5", "wiping:12345678901234567"])("refuse %j", (label) => {
    expect(wipedBytes(label)).toBeUndefined();
  });
});
