import { mkdir, readFile, readdir, rename, unlink } from "node:fs/promises";
import { join } from "node:path";
import { syncPath, TEMPORARY_PREFIX, writeFileAtomic } from "../../../lib/atomic-file.js";

export interface RecordStoreOptions {
  /**
   * Called once per record that could not be loaded and was moved to `<dir>/quarantine/`:
   * `path` is where it now lies, `reason` why it was refused. The plugin logs it and counts it.
   */
  readonly onQuarantine?: (path: string, reason: string) => void;
}

/** Where unreadable records are moved, below the store's directory. */
export const QUARANTINE_DIR = "quarantine";

/**
 * One JSON file per record (`<dir>/<id>.json`), each written atomically (lib/atomic-file.ts).
 * A process killed at any moment leaves either the old record or the new one, never half of
 * one; leftover temporary files are removed when the store is opened.
 */
export class RecordStore<T extends { readonly id: string }> {
  private readonly records = new Map<string, T>();

  private constructor(
    private readonly dir: string,
    private readonly parse: (value: unknown) => T,
  ) {}

  /**
   * Opens (creating the directory) and loads every record. A record that cannot be read, does
   * not parse, or names another id than its file is moved aside to `quarantine/` (never
   * deleted: it may be the only trace of a volume) and reported through `onQuarantine`; the
   * others are served. One bad file must not block every volume on the node, unstage included.
   */
  static async open<T extends { readonly id: string }>(
    dir: string,
    parse: (value: unknown) => T,
    options: RecordStoreOptions = {},
  ): Promise<RecordStore<T>> {
    const store = new RecordStore(dir, parse);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    for (const name of (await readdir(dir)).sort()) {
      const path = join(dir, name);
      if (name.startsWith(TEMPORARY_PREFIX)) {
        await unlink(path).catch(() => undefined);
      } else if (name.endsWith(".json")) {
        const loaded = await load(path, name, parse);
        if (loaded.ok) {
          store.records.set(loaded.record.id, loaded.record);
        } else {
          const moved = await quarantine(dir, name);
          options.onQuarantine?.(moved, loaded.reason);
        }
      }
    }
    return store;
  }

  get(id: string): T | undefined {
    return this.records.get(id);
  }

  /** All records, sorted by id (the order pagination tokens rely on). */
  list(): T[] {
    return [...this.records.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  find(predicate: (record: T) => boolean): T | undefined {
    for (const record of this.records.values()) if (predicate(record)) return record;
    return undefined;
  }

  async put(record: T): Promise<void> {
    this.parse(record);
    await writeFileAtomic(this.pathOf(record.id), `${JSON.stringify(record, null, 2)}\n`);
    this.records.set(record.id, record);
  }

  async remove(id: string): Promise<void> {
    await unlink(this.pathOf(id)).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== "ENOENT") throw err;
    });
    await syncPath(this.dir);
    this.records.delete(id);
  }

  private pathOf(id: string): string {
    return join(this.dir, `${id}.json`);
  }
}

async function load<T extends { readonly id: string }>(
  path: string,
  name: string,
  parse: (value: unknown) => T,
): Promise<{ ok: true; record: T } | { ok: false; reason: string }> {
  try {
    const record = parse(JSON.parse(await readFile(path, "utf8")));
    // A record must live in the file its id names, or a put would write a second copy.
    if (`${record.id}.json` !== name) return { ok: false, reason: `it holds the record of ${JSON.stringify(record.id)}, not of its file name` };
    return { ok: true, record };
  } catch (err) {
    return { ok: false, reason: err instanceof Error ? err.message : String(err) };
  }
}

/** Moves `<dir>/<name>` to `<dir>/quarantine/`, under a new name if one is there already. */
async function quarantine(dir: string, name: string): Promise<string> {
  const target = join(dir, QUARANTINE_DIR);
  await mkdir(target, { recursive: true, mode: 0o700 });
  const existing = new Set(await readdir(target));
  let moved = name;
  for (let n = 1; existing.has(moved); n += 1) moved = `${name}.${n}`;
  const path = join(target, moved);
  await rename(join(dir, name), path);
  await syncPath(target);
  await syncPath(dir);
  return path;
}
