import { join } from "node:path";
import { deriveDataKey, readKeyMaterial } from "../../lib/data-key.js";
import { UnavailableError } from "../../lib/errors.js";
import type { KeySource } from "./key-source.js";

export interface FileKeySourceOptions {
  /**
   * A directory holding `master-secret` and `salt`, as `cloak keys init` writes them. Keys are
   * derived exactly as the key service derives them, so a volume made with this source opens
   * with the key service given the same files, and the other way round.
   */
  readonly dir: string;
}

/** For development and single-machine use: no network, the key material is a local file. */
export async function createFileKeySource(options: FileKeySourceOptions): Promise<KeySource> {
  const masterSecret = await readKeyMaterial(join(options.dir, "master-secret"), "master secret");
  const salt = await readKeyMaterial(join(options.dir, "salt"), "salt");
  let closed = false;
  return {
    kind: "file",
    getKey(keyId, length) {
      if (closed) return Promise.reject(new UnavailableError("the file key source is closed"));
      return Promise.resolve(deriveDataKey(masterSecret, salt, keyId, length));
    },
    probe() {
      return closed ? Promise.reject(new UnavailableError("the file key source is closed")) : Promise.resolve();
    },
    close() {
      closed = true;
      masterSecret.fill(0);
      salt.fill(0);
      return Promise.resolve();
    },
  };
}
