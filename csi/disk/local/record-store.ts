import { mkdir, readFile, readdir, unlink } from "node:fs/promises";
import { join } from "node:path";
import { syncPath, TEMPORARY_PREFIX, writeFileAtomic } from "../../../lib/atomic-file.js";

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

  /** Opens (creating the directory) and loads every record. A record that fails `parse` stops the load. */
  static async open<T extends { readonly id: string }>(dir: string, parse: (value: unknown) => T): Promise<RecordStore<T>> {
    const store = new RecordStore(dir, parse);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    for (const name of await readdir(dir)) {
      const path = join(dir, name);
      if (name.startsWith(TEMPORARY_PREFIX)) {
        await unlink(path).catch(() => undefined);
      } else if (name.endsWith(".json")) {
        let record: T;
        try {
          record = parse(JSON.parse(await readFile(path, "utf8")));
        } catch (err) {
          throw new Error(`record ${path} cannot be read: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
        }
        store.records.set(record.id, record);
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
