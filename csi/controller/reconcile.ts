import type { Logger } from "../../lib/log.js";
import type { ControllerDiskSource, DiskInventory, DiskRef } from "../disk/disk-source.js";
import type { RecordStore } from "../disk/local/record-store.js";
import { releaseMember, type KeyLineage } from "../keys/lineage.js";
import type { VolumeLocks } from "../volume-locks.js";
import type { SnapshotRecord, VolumeRecord } from "./records.js";

/**
 * What the controller does with the state a killed or restarted plugin finds (README.md, "The
 * encrypted volume", says the same for admins):
 *
 * - `deleting` records: the CO asked for the delete; it is finished at start (unless the disk
 *   is attached again, when the CO's retry gets the usual refusal).
 * - `creating` records: kept, with whatever disk or partial copy they have, because the CO
 *   retries CreateVolume/CreateSnapshot until it gets an answer, and the retry resumes. A
 *   creation nobody has asked about for `abandonAfterMs` (its claim was deleted meanwhile) is
 *   cleaned up: it was never handed out, so its disk holds no one's data.
 * - partial copies whose record is gone: erased and removed.
 * - disks without any record are never deleted, only reported: the record may be in
 *   quarantine, and the disk may be the only copy of someone's data.
 *
 * Pure: the effects are in {@link Reconciler}.
 */
export type ReconcileAction =
  | { readonly action: "finish-delete"; readonly disk: DiskRef }
  | { readonly action: "discard-partial"; readonly disk: DiskRef }
  | { readonly action: "report-orphan"; readonly disk: DiskRef };

export function planStartup(
  volumes: readonly VolumeRecord[],
  snapshots: readonly SnapshotRecord[],
  inventory: DiskInventory,
): ReconcileAction[] {
  const key = (disk: DiskRef): string => `${disk.kind}:${disk.id}`;
  const states = new Map<string, string>([
    ...volumes.map((v) => [`volume:${v.id}`, v.state] as const),
    ...snapshots.map((s) => [`snapshot:${s.id}`, s.state] as const),
  ]);
  const actions: ReconcileAction[] = [];
  for (const record of [...volumes.map((v) => ({ kind: "volume" as const, ...v })), ...snapshots.map((s) => ({ kind: "snapshot" as const, ...s }))]) {
    if (record.state === "deleting") actions.push({ action: "finish-delete", disk: { kind: record.kind, id: record.id } });
  }
  for (const disk of inventory.partials) {
    if (states.get(key(disk)) !== "creating") actions.push({ action: "discard-partial", disk });
  }
  for (const disk of inventory.disks) {
    if (!states.has(key(disk))) actions.push({ action: "report-orphan", disk });
  }
  return actions;
}

/** The creations nobody asked about for `abandonAfterMs`, among those not being worked on. */
export function abandonedCreations(
  creating: readonly { readonly kind: DiskRef["kind"]; readonly id: string }[],
  lastSeen: ReadonlyMap<string, number>,
  busy: (id: string) => boolean,
  now: number,
  abandonAfterMs: number,
): DiskRef[] {
  return creating
    .filter((r) => !busy(r.id) && now - (lastSeen.get(r.id) ?? now) >= abandonAfterMs)
    .map((r) => ({ kind: r.kind, id: r.id }));
}

export interface ReconcilerOptions {
  readonly disks: ControllerDiskSource;
  readonly volumes: RecordStore<VolumeRecord>;
  readonly snapshots: RecordStore<SnapshotRecord>;
  readonly locks: VolumeLocks;
  readonly log: Logger;
  readonly abandonAfterMs: number;
  /** Where the controller records each key's members: a finished delete or cleanup releases its key there too. */
  readonly lineage: KeyLineage;
  /** This driver's name, as the lineage records it. */
  readonly driverName: string;
}

export class Reconciler {
  /** When the CO last asked about each creation (or the process started, whichever is later). */
  private readonly lastSeen = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly options: ReconcilerOptions) {}

  /** A CreateVolume/CreateSnapshot retry arrived for this record. */
  touch(id: string): void {
    this.lastSeen.set(id, Date.now());
  }

  /** Runs once before the plugin serves. Failures are logged: a bad disk must not stop every volume. */
  async startup(): Promise<void> {
    const { disks, volumes, snapshots, log } = this.options;
    await disks.recover().catch((err: unknown) => log.error({ err: err instanceof Error ? err.message : String(err) }, "recovery of the disk source failed"));
    const started = Date.now();
    for (const record of [...volumes.list(), ...snapshots.list()]) {
      if (record.state === "creating") this.lastSeen.set(record.id, Math.max(started, Date.parse(record.createdAt) || 0));
    }
    for (const step of planStartup(volumes.list(), snapshots.list(), await disks.inventory())) {
      const ids = { kind: step.disk.kind, id: step.disk.id };
      try {
        if (step.action === "report-orphan") {
          log.warn(ids, "a disk has no record (its record may be in quarantine); left as it is");
        } else if (step.action === "discard-partial") {
          await disks.destroy(step.disk);
          log.info(ids, "removed a partial copy whose creation is gone");
        } else if (step.disk.kind === "volume" && (await disks.isAttached(step.disk.id))) {
          log.warn(ids, "a volume being deleted is attached again; its delete waits for the CO's retry");
        } else {
          await disks.destroy(step.disk);
          await this.releaseKey(step.disk);
          await (step.disk.kind === "volume" ? volumes : snapshots).remove(step.disk.id);
          log.info(ids, "finished an interrupted delete");
        }
      } catch (err) {
        log.error({ ...ids, err: err instanceof Error ? err.message : String(err) }, `reconciliation step ${step.action} failed`);
      }
    }
  }

  /** Cleans up creations abandoned by the CO. */
  async sweep(now = Date.now()): Promise<void> {
    const { disks, volumes, snapshots, locks, log } = this.options;
    const creating = [
      ...volumes.list().filter((v) => v.state === "creating").map((v) => ({ kind: "volume" as const, id: v.id, name: `name:${v.name}` })),
      ...snapshots.list().filter((s) => s.state === "creating").map((s) => ({ kind: "snapshot" as const, id: s.id, name: `snapshot-name:${s.name}` })),
    ];
    const nameLock = new Map(creating.map((c) => [c.id, c.name]));
    const busy = (id: string): boolean => locks.isLocked(id) || locks.isLocked(nameLock.get(id) ?? "");
    for (const disk of abandonedCreations(creating, this.lastSeen, busy, now, this.options.abandonAfterMs)) {
      const idleMs = now - (this.lastSeen.get(disk.id) ?? now);
      try {
        await locks.with(nameLock.get(disk.id) ?? disk.id, "abandoned-creation cleanup", () =>
          locks.with(disk.id, "abandoned-creation cleanup", async () => {
            await disks.destroy(disk);
            await this.releaseKey(disk);
            await (disk.kind === "volume" ? volumes : snapshots).remove(disk.id);
          }),
        );
        this.lastSeen.delete(disk.id);
        log.info({ kind: disk.kind, id: disk.id, idleMs }, "removed a creation the CO abandoned");
      } catch (err) {
        log.warn({ kind: disk.kind, id: disk.id, err: err instanceof Error ? err.message : String(err) }, "could not remove an abandoned creation");
      }
    }
  }

  /**
   * After the disk is gone, before the record (as DeleteVolume does): a crash in between leaves
   * the record, so the next attempt still knows the key to release.
   */
  private async releaseKey(disk: DiskRef): Promise<void> {
    const { volumes, snapshots, lineage, driverName } = this.options;
    const keyId = (disk.kind === "volume" ? volumes.get(disk.id) : snapshots.get(disk.id))?.keyId;
    await releaseMember(lineage, { keyId, driver: driverName, member: disk, signal: AbortSignal.timeout(60_000) });
  }

  /** Sweeps every `min(10 min, abandonAfter / 2)` until stopped. */
  start(): void {
    const every = Math.max(1_000, Math.min(600_000, this.options.abandonAfterMs / 2));
    this.timer = setInterval(() => void this.sweep(), every);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }
}
