import type { Command } from "../../lib/exec.js";

/**
 * Writes zeros over bytes [offset, offset + length) of a block device, bypassing the page
 * cache, and flushes the device before exiting: when it exits 0, those bytes are on the disk.
 */
export function writeZeros(device: string, offset: number, length: number): Command {
  return {
    file: "dd",
    args: [
      "if=/dev/zero", `of=${device}`, "bs=1M", `seek=${offset}`, `count=${length}`,
      "iflag=count_bytes", "oflag=direct,seek_bytes", "conv=fsync,notrunc", "status=none",
    ],
    timeoutMs: 600_000,
  };
}
