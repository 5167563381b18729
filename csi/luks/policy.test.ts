import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { checkHeader } from "./policy.js";

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
