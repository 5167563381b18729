import { describe, expect, it } from "vitest";
import { parseKernelCipherBenchmark, parseOpensslSpeed } from "./cipher.js";

// Captured in the VM tier's guest (Debian 12, cryptsetup 2.6.1, OpenSSL 3.0.19).
const cryptsetupOutput = `# Tests are approximate using memory only (no storage IO).
# Algorithm |       Key |      Encryption |      Decryption
    aes-xts        512b         0.1 MiB/s        23.9 MiB/s
`;
const opensslOutput = `version: 3.0.19
built on: Fri Apr  3 12:29:32 2026 UTC
options: bn(64,64)
CPUINFO: OPENSSL_ia32cap=0xfed8320b0fcbfffd:0x8001021c01d843a9
The 'numbers' are in 1000s of bytes per second processed.
type           4096 bytes
AES-256-XTS      49765.35k
`;

describe("cipher benchmark parsers", () => {
  it("reads the kernel's encryption and decryption rates", () => {
    expect(parseKernelCipherBenchmark(cryptsetupOutput)).toEqual({ encryptMiBps: 0.1, decryptMiBps: 23.9 });
    expect(parseKernelCipherBenchmark("Cipher aes-xts-plain64 (with 512 bits key) is not available.\n")).toBeUndefined();
  });

  it("converts OpenSSL's thousands of bytes per second to MiB/s", () => {
    expect(parseOpensslSpeed(opensslOutput)).toBeCloseTo((49765.35 * 1000) / 1048576, 6);
    expect(parseOpensslSpeed("no such cipher")).toBeUndefined();
  });
});
