import { constants, open, type FileHandle } from "node:fs/promises";
import { InternalError } from "../../lib/errors.js";
import { FIRST_READ_BYTES, headerAreaBytes } from "./header.js";

const WASM_PAGE_BYTES = 65536;
// The one piece of the WebAssembly API used here (its types live in the DOM lib, not Node's).
declare const WebAssembly: { Memory: new (descriptor: { initial: number }) => { readonly buffer: ArrayBuffer } };

/**
 * The bytes at the start of `device` that hold both copies of its LUKS2 header (header.ts
 * parses them): one open, one read of 32 KiB — both copies of a header of the default 16 KiB —
 * and a second read only when the primary says the header is larger (up to 2 × 4 MiB).
 *
 * With direct I/O, as cryptsetup reads headers: while a mapping holds the disk open, the disk's
 * page cache keeps whatever was read first, and a header changed underneath it (through a loop
 * device's backing file, or by another host writing a shared disk) would go unseen by the
 * check NodeGetVolumeStats makes. O_DIRECT needs memory aligned to the device's block size,
 * which Node's Buffers are not; a WebAssembly.Memory's buffer starts on a page boundary. A
 * regular file on a filesystem without O_DIRECT (tmpfs) is read through the page cache, which
 * for a file is the file itself.
 */
export async function readHeaderArea(device: string, signal?: AbortSignal): Promise<Buffer> {
  signal?.throwIfAborted();
  const handle = await open(device, constants.O_RDONLY | constants.O_DIRECT).catch((err: unknown) => {
    if ((err as NodeJS.ErrnoException).code === "EINVAL") return open(device, constants.O_RDONLY);
    throw err;
  });
  try {
    const first = await readAt(handle, device, 0, FIRST_READ_BYTES);
    const wanted = headerAreaBytes(first);
    if (wanted <= first.length || first.length < FIRST_READ_BYTES) return first;
    return Buffer.concat([first, await readAt(handle, device, first.length, wanted - first.length)]);
  } finally {
    await handle.close();
  }
}

/** Up to `length` bytes from `position`, fewer only where the device ends; copied out of the aligned buffer. */
async function readAt(handle: FileHandle, device: string, position: number, length: number): Promise<Buffer> {
  const aligned = Buffer.from(new WebAssembly.Memory({ initial: Math.ceil(length / WASM_PAGE_BYTES) }).buffer, 0, length);
  let done = 0;
  try {
    while (done < length) {
      const { bytesRead } = await handle.read(aligned, done, length - done, position + done);
      if (bytesRead === 0) break;
      done += bytesRead;
    }
  } catch (err) {
    throw new InternalError(`cannot read the LUKS2 header of ${device} (${length} bytes at ${position + done})`, { cause: err });
  }
  return Buffer.from(aligned.subarray(0, done));
}
