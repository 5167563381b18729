import { describe, expect, it } from "vitest";
import { abandonedCreations, planStartup } from "./reconcile.js";
import type { SnapshotRecord, VolumeRecord } from "./records.js";

const parameters = { fsType: "ext4" as const, integrity: false };
const volume = (id: string, state: VolumeRecord["state"]): VolumeRecord => ({
  id, name: `pvc-${id}`, state, capacityBytes: 1, diskBytes: 1, parameters, nodeId: "n", createdAt: "2026-01-01T00:00:00Z",
});
const snapshot = (id: string, state: SnapshotRecord["state"]): SnapshotRecord => ({
  id, name: `snap-${id}`, state, sourceVolumeId: "vol-a", capacityBytes: 1, diskBytes: 1, parameters, createdAt: "2026-01-01T00:00:00Z",
});

describe("planStartup", () => {
  it("finishes deletes, discards orphaned partial copies, and only reports disks without records", () => {
    const plan = planStartup(
      [volume("vol-ready", "ready"), volume("vol-deleting", "deleting"), volume("vol-creating", "creating")],
      [snapshot("snap-deleting", "deleting")],
      {
        disks: [{ kind: "volume", id: "vol-ready" }, { kind: "volume", id: "vol-deleting" }, { kind: "volume", id: "vol-quarantined" }],
        partials: [{ kind: "volume", id: "vol-creating" }, { kind: "volume", id: "vol-gone" }, { kind: "snapshot", id: "snap-gone" }],
      },
    );
    expect(plan).toEqual([
      { action: "finish-delete", disk: { kind: "volume", id: "vol-deleting" } },
      { action: "finish-delete", disk: { kind: "snapshot", id: "snap-deleting" } },
      { action: "discard-partial", disk: { kind: "volume", id: "vol-gone" } },
      { action: "discard-partial", disk: { kind: "snapshot", id: "snap-gone" } },
      { action: "report-orphan", disk: { kind: "volume", id: "vol-quarantined" } },
    ]);
  });

  it("never plans to remove a disk whose record is missing", () => {
    const plan = planStartup([], [], { disks: [{ kind: "volume", id: "vol-x" }], partials: [] });
    expect(plan.every((step) => step.action === "report-orphan")).toBe(true);
  });
});

describe("abandonedCreations", () => {
  const creating = [{ kind: "volume" as const, id: "vol-old" }, { kind: "volume" as const, id: "vol-recent" }, { kind: "snapshot" as const, id: "snap-busy" }];
  const lastSeen = new Map([["vol-old", 0], ["vol-recent", 9_000], ["snap-busy", 0]]);
  it("picks the creations idle for the period that nothing is working on", () => {
    expect(abandonedCreations(creating, lastSeen, (id) => id === "snap-busy", 10_000, 5_000)).toEqual([{ kind: "volume", id: "vol-old" }]);
  });
  it("gives one never seen the whole period from now", () => {
    expect(abandonedCreations([{ kind: "volume", id: "vol-new" }], new Map(), () => false, 10_000, 5_000)).toEqual([]);
  });
});
