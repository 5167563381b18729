import { describe, expect, it } from "vitest";
import { AbortedError } from "../lib/errors.js";
import { VolumeLocks } from "./volume-locks.js";

describe("VolumeLocks", () => {
  it("refuses a second operation on the same volume with Aborted, naming the holder", async () => {
    const locks = new VolumeLocks();
    let release!: () => void;
    const first = locks.with("vol-1", "NodeStageVolume", () => new Promise<void>((r) => (release = r)));
    await expect(locks.with("vol-1", "NodeUnstageVolume", async () => "never")).rejects.toThrow(
      new AbortedError("an operation on vol-1 is already in progress (NodeStageVolume); retry later"),
    );
    release();
    await first;
    await expect(locks.with("vol-1", "NodeUnstageVolume", async () => "ran")).resolves.toBe("ran");
  });

  it("lets different volumes proceed together", async () => {
    const locks = new VolumeLocks();
    const results = await Promise.all([locks.with("a", "x", async () => 1), locks.with("b", "x", async () => 2)]);
    expect(results).toEqual([1, 2]);
  });

  it("releases the lock when the operation fails", async () => {
    const locks = new VolumeLocks();
    await expect(locks.with("a", "x", () => Promise.reject(new Error("boom")))).rejects.toThrow("boom");
    expect(locks.isLocked("a")).toBe(false);
  });
});
