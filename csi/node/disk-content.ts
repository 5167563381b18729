import { open } from "node:fs/promises";

/** How much of each end of a disk is read: where partition tables and superblocks live. */
const REGION_BYTES = 1024 * 1024;

/**
 * The offset of the first non-zero byte in the first and last MiB of a disk of `size` bytes
 * (or of the `size` bytes from `offset` on: a data segment), or undefined when both are all
 * zeros. blkid recognises signatures; this catches data it does not (an old volume whose
 * header was detached, a raw database file), so that "no signature" alone never licenses a
 * format. A new cloud disk or a new sparse file reads as zeros.
 */
export async function firstNonZeroByte(device: string, size: number, offset = 0): Promise<number | undefined> {
  const regions = size <= 2 * REGION_BYTES ? [{ start: offset, length: size }] : [
    { start: offset, length: REGION_BYTES },
    { start: offset + size - REGION_BYTES, length: REGION_BYTES },
  ];
  const handle = await open(device, "r");
  try {
    for (const { start, length } of regions) {
      const buffer = Buffer.alloc(length);
      const { bytesRead } = await handle.read(buffer, 0, length, start);
      const read = buffer.subarray(0, bytesRead);
      // Comparing whole buffers is native code; only a region with data is scanned byte by byte.
      if (read.equals(Buffer.alloc(bytesRead))) continue;
      return start + read.findIndex((byte) => byte !== 0);
    }
    return undefined;
  } finally {
    await handle.close();
  }
}
