import { lstat } from "node:fs/promises";
import { join } from "node:path";
import { writeFileAtomic } from "../../lib/atomic-file.js";
import { readKeyMaterial } from "../../lib/data-key.js";
import { FailedPreconditionError } from "../../lib/errors.js";

/**
 * Where `cloak keys wrap` and `rewrap` find and put the master secret: a `cloak keys init`
 * directory, or the key service's Secret itself (what the rewrap Job uses). A write never
 * leaves half a change: a file is replaced atomically (lib/atomic-file.ts); a Secret in one
 * update that carries the resourceVersion it was read at, so a concurrent change makes it fail
 * instead of being overwritten.
 */
export interface KeyStore {
  /** For messages: the directory, or `secret NS/NAME`. */
  readonly where: string;
  /** True for the Secret: the plain master secret must not stay beside the wrapped one. */
  readonly isSecret: boolean;
  read(name: string): Promise<Buffer | undefined>;
  /** Sets (a Buffer) or removes (null) entries, all in one go where the store allows. */
  write(changes: Readonly<Record<string, Buffer | null>>): Promise<void>;
}

export function directoryStore(dir: string): KeyStore {
  return {
    where: dir,
    isSecret: false,
    async read(name) {
      const path = join(dir, name);
      if (!(await lstat(path).then(() => true, () => false))) return undefined;
      // The same checks the key service makes: a regular file, not world-readable.
      return readKeyMaterial(path, name);
    },
    async write(changes) {
      for (const [name, data] of Object.entries(changes)) {
        if (data === null) throw new FailedPreconditionError(`refusing to delete ${join(dir, name)}: a directory is the admin's own copy`);
        await writeFileAtomic(join(dir, name), data, { mode: 0o400 });
      }
    },
  };
}
