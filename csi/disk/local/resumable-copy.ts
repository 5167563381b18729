import { open, readFile, stat, unlink } from "node:fs/promises";
import { writeFileAtomic } from "../../../lib/atomic-file.js";
import type { Runner } from "../../../lib/exec.js";
import type { Logger } from "../../../lib/log.js";
import { failpoint } from "../../failpoints.js";
import { reflinkCopy } from "../../tools/cp.js";
import type { CopyProgress } from "../disk-source.js";

/** Bytes read and written at a time. */
const CHUNK_BYTES = 4 * 1024 * 1024;
/** How often progress is made durable: the most a crash makes a retry copy again. */
export const PROGRESS_EVERY_BYTES = 64 * 1024 * 1024;

/** What identifies the source's content: a copy resumes only while all of it is unchanged. */
interface SourceIdentity {
  readonly path: string;
  readonly inode: string;
  readonly size: number;
  readonly mtimeNs: string;
}

interface SavedProgress {
  readonly source: SourceIdentity;
  /** Bytes [0, copiedBytes) of the source are in the partial file and were fsynced. */
  readonly copiedBytes: number;
}

export interface ResumableCopyOptions {
  readonly source: string;
  /** The file being written: kept across attempts, renamed into place by the caller. */
  readonly partial: string;
  /** Where progress is recorded (atomically, after an fsync of `partial`). */
  readonly progressFile: string;
  readonly run: Runner;
  readonly log: Logger;
  readonly onProgress?: ((progress: CopyProgress) => void) | undefined;
  /** The source disk's id, for the crash tests' failpoint. */
  readonly scope?: string;
  /** How often progress is recorded; PROGRESS_EVERY_BYTES unless a test says otherwise. */
  readonly progressEveryBytes?: number;
}

/**
 * Copies `source` into `partial`, continuing where an earlier attempt stopped when the source
 * is the same file with the same size and modification time as then (a snapshot's disk, or a
 * volume nobody wrote to meanwhile); otherwise it starts again, because a copy stitched from
 * two states of a source is garbage. Where the filesystem can share blocks (reflink: xfs,
 * btrfs) the copy is one instant clone; elsewhere it goes chunk by chunk, leaving holes where
 * the source reads as zeros, and records its progress every PROGRESS_EVERY_BYTES. On return
 * `partial` holds the whole source and is durable.
 */
export async function resumableCopy(options: ResumableCopyOptions): Promise<void> {
  const { source, partial, progressFile, log } = options;
  const info = await stat(source, { bigint: true });
  const identity: SourceIdentity = { path: source, inode: String(info.ino), size: Number(info.size), mtimeNs: String(info.mtimeNs) };
  const saved = await readProgress(progressFile);
  const partialExists = await stat(partial).then(() => true, () => false);
  let copied = 0;
  if (saved && partialExists && sameSource(saved.source, identity) && saved.copiedBytes <= identity.size) {
    copied = saved.copiedBytes;
    log.info({ source, copiedBytes: copied, totalBytes: identity.size }, "resuming an interrupted copy");
  } else {
    if (saved) log.info({ source }, "the source changed since the interrupted copy began; copying again from the start");
    await unlink(partial).catch(() => undefined);
    await writeProgress(progressFile, { source: identity, copiedBytes: 0 });
    if (await tryReflink(options)) {
      await writeProgress(progressFile, { source: identity, copiedBytes: identity.size });
      options.onProgress?.({ copiedBytes: identity.size, totalBytes: identity.size });
      return;
    }
  }

  const from = await open(source, "r");
  const to = await open(partial, partialExists && copied > 0 ? "r+" : "w", 0o600);
  try {
    // Whatever an attempt wrote after its last record is dropped: only recorded bytes count.
    await to.truncate(copied);
    await to.truncate(identity.size);
    const buffer = Buffer.alloc(CHUNK_BYTES);
    const zeros = Buffer.alloc(CHUNK_BYTES);
    let recorded = copied;
    while (copied < identity.size) {
      const { bytesRead } = await from.read(buffer, 0, Math.min(CHUNK_BYTES, identity.size - copied), copied);
      if (bytesRead === 0) throw new Error(`${source} ended at byte ${copied}, before its size ${identity.size}: it changed during the copy`);
      const chunk = buffer.subarray(0, bytesRead);
      if (!chunk.equals(zeros.subarray(0, bytesRead))) await to.write(chunk, 0, bytesRead, copied);
      copied += bytesRead;
      if (copied - recorded >= (options.progressEveryBytes ?? PROGRESS_EVERY_BYTES) || copied === identity.size) {
        await to.datasync();
        await writeProgress(progressFile, { source: identity, copiedBytes: copied });
        recorded = copied;
        options.onProgress?.({ copiedBytes: copied, totalBytes: identity.size });
        if (copied < identity.size) failpoint("copy:mid-copy", options.scope);
      }
    }
    await to.sync();
  } finally {
    await Promise.all([from.close(), to.close()]);
  }
}

/** An instant copy where the filesystem shares blocks; false (nothing copied) where it cannot. */
async function tryReflink(options: ResumableCopyOptions): Promise<boolean> {
  try {
    await options.run(reflinkCopy(options.source, options.partial));
    return true;
  } catch {
    await unlink(options.partial).catch(() => undefined);
    return false;
  }
}

function sameSource(a: SourceIdentity, b: SourceIdentity): boolean {
  return a.path === b.path && a.inode === b.inode && a.size === b.size && a.mtimeNs === b.mtimeNs;
}

async function readProgress(path: string): Promise<SavedProgress | undefined> {
  try {
    const value = JSON.parse(await readFile(path, "utf8")) as Partial<SavedProgress> | null;
    const s = value?.source;
    if (
      typeof value?.copiedBytes !== "number" || !Number.isSafeInteger(value.copiedBytes) || value.copiedBytes < 0 ||
      typeof s?.path !== "string" || typeof s.inode !== "string" || typeof s.size !== "number" || typeof s.mtimeNs !== "string"
    ) {
      return undefined;
    }
    return { source: s, copiedBytes: value.copiedBytes };
  } catch {
    // Missing or unreadable: the copy starts from the beginning, which is always correct.
    return undefined;
  }
}

async function writeProgress(path: string, progress: SavedProgress): Promise<void> {
  await writeFileAtomic(path, `${JSON.stringify(progress)}\n`);
}
