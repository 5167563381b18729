import { randomBytes } from "node:crypto";
import { mkdir, open, rename, rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";

/**
 * The one way cloak writes state that must survive a crash (records, keys, certificates, disk
 * images): the content goes to a temporary file in the same directory, created with its final
 * mode (never wider) and fsynced; it is renamed over the target; then the directory is fsynced,
 * because the rename is durable only once the directory entry is. A process killed at any
 * moment leaves the old file or the new one, never half of one; a leftover temporary file
 * starts with `.tmp-` and may be removed by whoever owns the directory.
 */
export interface AtomicWriteOptions {
  /** The file's mode; 0600 by default. */
  readonly mode?: number;
  /** The mode of directories created on the way; 0700 by default. */
  readonly dirMode?: number;
}

export const TEMPORARY_PREFIX = ".tmp-";

export async function writeFileAtomic(path: string, data: string | Buffer, options: AtomicWriteOptions = {}): Promise<void> {
  await replaceFileAtomic(
    path,
    async (tmp) => {
      const handle = await open(tmp, "wx", options.mode ?? 0o600);
      try {
        await handle.writeFile(data);
        // open()'s mode is filtered by the umask; the file must have exactly the mode asked for.
        await handle.chmod(options.mode ?? 0o600);
      } finally {
        await handle.close();
      }
    },
    options,
  );
}

/**
 * Like writeFileAtomic, for content another program writes (`cp`, `truncate`): `produce`
 * creates the temporary file it is given; it is then fsynced and renamed into place.
 */
export async function replaceFileAtomic(
  path: string,
  produce: (temporaryPath: string) => Promise<void>,
  options: Pick<AtomicWriteOptions, "dirMode"> = {},
): Promise<void> {
  const dir = dirname(path);
  await mkdir(dir, { recursive: true, mode: options.dirMode ?? 0o700 });
  const tmp = join(dir, `${TEMPORARY_PREFIX}${basename(path)}-${randomBytes(4).toString("hex")}`);
  try {
    await produce(tmp);
    await syncPath(tmp);
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  await syncPath(dir);
}

/** fsync of a file or a directory (a directory's entries: creations, renames, removals). */
export async function syncPath(path: string): Promise<void> {
  const handle = await open(path, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
