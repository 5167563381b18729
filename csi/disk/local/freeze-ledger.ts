import { readdir, readFile, unlink } from "node:fs/promises";
import { join } from "node:path";
import { syncPath, writeFileAtomic } from "../../../lib/atomic-file.js";
import { ExecError, type Runner } from "../../../lib/exec.js";
import type { Logger } from "../../../lib/log.js";
import { readMounts } from "../../node/mounts.js";
import { failpoint } from "../../failpoints.js";
import { freeze, unfreeze } from "../../tools/fsfreeze.js";

interface FrozenEntry {
  readonly volumeId: string;
  readonly mountPoint: string;
  /** "major:minor" of the mounted device: a mount point reused by another volume is left alone. */
  readonly device: string;
}

/**
 * Every filesystem cloak freezes for a copy is written down (`<dir>/frozen/<volume>.json`)
 * before the freeze and crossed off after the thaw, so that a process killed while one is
 * frozen — every write to it blocked — can thaw it when it starts again, and before it
 * freezes anything else. Only what cloak froze is ever thawed.
 */
export class FreezeLedger {
  /** Freezes held by this process right now: never thawed behind a running copy's back. */
  private readonly held = new Set<string>();

  constructor(
    private readonly dir: string,
    private readonly run: Runner,
    private readonly log: Logger,
  ) {}

  async whileFrozen<T>(entry: FrozenEntry, fn: () => Promise<T>): Promise<T> {
    await this.thawLeftovers();
    await writeFileAtomic(this.pathOf(entry.volumeId), `${JSON.stringify(entry)}\n`);
    this.held.add(entry.volumeId);
    try {
      await this.run(freeze(entry.mountPoint));
      failpoint("copy:mid-freeze", entry.volumeId);
      return await fn();
    } finally {
      await this.thaw(entry);
      this.held.delete(entry.volumeId);
    }
  }

  /** Thaws every filesystem the ledger names that no copy of this process holds frozen. */
  async thawLeftovers(): Promise<void> {
    const names = await readdir(this.dir).catch((err: NodeJS.ErrnoException) => {
      if (err.code === "ENOENT") return [] as string[];
      throw err;
    });
    for (const name of names.filter((n) => n.endsWith(".json"))) {
      const entry = await readEntry(join(this.dir, name));
      if (!entry) {
        await unlink(join(this.dir, name)).catch(() => undefined);
        continue;
      }
      if (this.held.has(entry.volumeId)) continue;
      const thawed = await this.thaw(entry);
      this.log.warn({ volume_id: entry.volumeId, mountPoint: entry.mountPoint, thawed }, "thawed a filesystem an interrupted copy left frozen");
    }
  }

  /** Unfreezes (when the mount is still the one frozen) and crosses the entry off. */
  private async thaw(entry: FrozenEntry): Promise<boolean> {
    const mounted = (await readMounts()).some((m) => m.mountPoint === entry.mountPoint && m.device === entry.device);
    let thawed = false;
    if (mounted) {
      try {
        await this.run(unfreeze(entry.mountPoint));
        thawed = true;
      } catch (err) {
        // EINVAL: it was not frozen (the freeze itself never happened, or someone thawed it).
        if (!(err instanceof ExecError && /Invalid argument/.test(err.stderr))) throw err;
      }
    }
    await unlink(this.pathOf(entry.volumeId)).catch(() => undefined);
    await syncPath(this.dir).catch(() => undefined);
    return thawed;
  }

  private pathOf(volumeId: string): string {
    return join(this.dir, `${volumeId}.json`);
  }
}

async function readEntry(path: string): Promise<FrozenEntry | undefined> {
  try {
    const value = JSON.parse(await readFile(path, "utf8")) as Partial<FrozenEntry> | null;
    if (typeof value?.volumeId !== "string" || typeof value.mountPoint !== "string" || typeof value.device !== "string") return undefined;
    return { volumeId: value.volumeId, mountPoint: value.mountPoint, device: value.device };
  } catch {
    return undefined;
  }
}
