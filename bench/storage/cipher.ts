import type { Command } from "../../lib/exec.js";
import type { Cell, Table } from "../lib/table.js";

/**
 * How fast the CPU at hand encrypts AES-256-XTS (cloak's cipher), measured without any disk:
 * the ceiling for dm-crypt's throughput. In the VM tier the guest's CPU is emulated, and this
 * is what explains its fio ratios; the host's figure shows what the same software gets on the
 * real CPU.
 */

/** The kernel's crypto API, which dm-crypt uses (needs algif_skcipher). */
export function kernelCipherBenchmark(): Command {
  return { file: "cryptsetup", args: ["benchmark", "--cipher", "aes-xts-plain64", "--key-size", "512"], timeoutMs: 300_000 };
}

/** OpenSSL in user space, on 4 KiB blocks (dm-crypt's sector size in cloak). Runs on any kernel. */
export function opensslCipherBenchmark(seconds: number): Command {
  return { file: "openssl", args: ["speed", "-evp", "aes-256-xts", "-bytes", "4096", "-seconds", String(seconds)], timeoutMs: (seconds + 60) * 1000 };
}

/**
 * `cryptsetup benchmark --cipher ...` prints
 *   #     Algorithm |       Key |      Encryption |      Decryption
 *         aes-xts        512b      1234.5 MiB/s      1240.1 MiB/s
 */
export function parseKernelCipherBenchmark(stdout: string): { encryptMiBps: number; decryptMiBps: number } | undefined {
  const match = /^\s*aes-xts\s+512b\s+([\d.]+) MiB\/s\s+([\d.]+) MiB\/s/m.exec(stdout);
  return match ? { encryptMiBps: Number(match[1]), decryptMiBps: Number(match[2]) } : undefined;
}

/** `openssl speed -evp aes-256-xts -bytes 4096` ends with "AES-256-XTS  49765.35k": 1000s of bytes per second. */
export function parseOpensslSpeed(stdout: string): number | undefined {
  const match = /^AES-256-XTS\s+([\d.]+)k\s*$/im.exec(stdout);
  return match ? (Number(match[1]) * 1000) / 1048576 : undefined;
}

export interface CipherFigures {
  /** dm-crypt's crypto API in the kernel that ran the benchmark (the guest's, in the VM tier). */
  readonly kernel?: { encryptMiBps: number; decryptMiBps: number };
  /** OpenSSL on the CPU that ran the benchmark. */
  readonly opensslMiBps?: number;
}

export function cipherTable(measured: CipherFigures, host: CipherFigures | undefined, indicative: boolean): Table {
  const where = indicative ? "guest (emulated CPU)" : "this machine";
  const rows: Cell[][] = [
    [`${where}: kernel crypto API (what dm-crypt uses), encrypt`, measured.kernel?.encryptMiBps ?? Number.NaN],
    [`${where}: kernel crypto API, decrypt`, measured.kernel?.decryptMiBps ?? Number.NaN],
    [`${where}: OpenSSL, 4 KiB blocks`, measured.opensslMiBps ?? Number.NaN],
  ];
  const notes: string[] = [];
  if (host) {
    rows.push(["host (real CPU): OpenSSL, 4 KiB blocks", host.opensslMiBps ?? Number.NaN]);
    if (host.opensslMiBps && measured.opensslMiBps) {
      notes.push(`the emulated CPU encrypts ${(host.opensslMiBps / measured.opensslMiBps).toFixed(0)}× slower than the host's: dm-crypt's ceiling in the guest is the kernel figure above, not the disk`);
    }
  }
  return { title: "AES-256-XTS throughput without a disk, MiB/s", columns: ["where, what", "MiB/s"], rows, notes };
}
