import { randomBytes } from "node:crypto";
import { chmod, mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";

/**
 * A key directory for the file key source: `master-secret` and `salt`, 32 random bytes each,
 * mode 0400, as `cloak keys init` writes them. Two directories give two unrelated key sets,
 * which is how tests present a wrong key.
 */
export async function createKeyDir(dir: string): Promise<string> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  for (const name of ["master-secret", "salt"]) {
    const path = join(dir, name);
    await writeFile(path, randomBytes(32), { mode: 0o400 });
    await chmod(path, 0o400);
  }
  return dir;
}
