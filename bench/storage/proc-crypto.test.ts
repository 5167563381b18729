import { describe, expect, it } from "vitest";
import { parseProcCrypto, preferredDriver } from "./proc-crypto.js";

// Excerpt of /proc/crypto from Debian's 6.1 kernel after a dm-crypt open (format as printed).
const sample = `name         : xts(aes)
driver       : xts(ecb(aes-generic))
module       : kernel
priority     : 100
refcnt       : 1
selftest     : passed
internal     : no
type         : skcipher
async        : no

name         : xts(aes)
driver       : xts-aes-aesni
module       : aesni_intel
priority     : 401
refcnt       : 2
selftest     : passed
internal     : no
type         : skcipher
async        : yes

name         : sha256
driver       : sha256-generic
module       : kernel
priority     : 100
`;

describe("parseProcCrypto", () => {
  it("reads every entry and picks the highest-priority driver of an algorithm", () => {
    const entries = parseProcCrypto(sample);
    expect(entries.map((e) => e.driver)).toEqual(["xts(ecb(aes-generic))", "xts-aes-aesni", "sha256-generic"]);
    expect(preferredDriver(entries, "xts(aes)")).toEqual({ name: "xts(aes)", driver: "xts-aes-aesni", module: "aesni_intel", priority: 401 });
    expect(preferredDriver(entries, "cbc(aes)")).toBeUndefined();
  });
});
