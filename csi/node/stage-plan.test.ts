import { describe, expect, it } from "vitest";
import type { ProbeResult } from "../tools/blkid.js";
import { planDevice, planFilesystem } from "./stage-plan.js";

const empty: ProbeResult = { kind: "empty" };
const ambivalent: ProbeResult = { kind: "ambivalent" };
const found = (fields: Record<string, string>): ProbeResult => ({ kind: "found", fields });
const luks2 = found({ TYPE: "crypto_LUKS", VERSION: "2", UUID: "3f2504e0-4f89-41d3-9a0c-0305e82c3301", LABEL: "in-use" });

describe("planDevice", () => {
  it.each([
    ["an empty, zeroed disk is formatted", empty, undefined, { action: "format" }],
    ["a LUKS2 disk is opened with its UUID as key id", luks2, undefined, { action: "open", uuid: "3f2504e0-4f89-41d3-9a0c-0305e82c3301", label: "in-use" }],
  ])("%s", (_name, probe, nonZero, plan) => {
    expect(planDevice(probe, nonZero)).toEqual(plan);
  });

  it.each([
    ["ext4", found({ TYPE: "ext4", USAGE: "filesystem", UUID: "ce677c53" }), undefined, "the disk holds ext4 filesystem (UUID ce677c53); refusing to format it"],
    ["a partition table", found({ PTTYPE: "gpt", PTUUID: "abcd" }), undefined, "the disk holds gpt partition table (UUID abcd); refusing to format it"],
    ["LUKS1", found({ TYPE: "crypto_LUKS", VERSION: "1", UUID: "x" }), undefined, "the disk holds a LUKS1 header; cloak opens only LUKS2"],
    ["conflicting signatures", ambivalent, undefined, "the disk carries several conflicting signatures; refusing to touch it"],
    ["unrecognised data", empty, 4096, "the disk holds data that no known signature describes (non-zero byte at offset 4096); refusing to format it"],
    ["a LUKS2 header without UUID", found({ TYPE: "crypto_LUKS", VERSION: "2" }), undefined, "the disk's LUKS2 header has no UUID"],
  ])("refuses %s", (_name, probe, nonZero, reason) => {
    expect(planDevice(probe, nonZero)).toEqual({ action: "refuse", reason });
  });
});

describe("planFilesystem", () => {
  it.each([
    ["a fresh volume gets the default ext4", empty, "fresh", undefined, { action: "mkfs", fsType: "ext4" }],
    ["a fresh volume gets the requested xfs", empty, "fresh", "xfs", { action: "mkfs", fsType: "xfs" }],
    ["an existing ext4 is mounted", found({ TYPE: "ext4" }), "in-use", undefined, { action: "mount", fsType: "ext4" }],
    ["an existing xfs is mounted when xfs is asked", found({ TYPE: "xfs" }), "in-use", "xfs", { action: "mount", fsType: "xfs" }],
    // A crash after mkfs but before the label was updated: the filesystem is used, not recreated.
    ["a filesystem on a volume still labelled fresh is mounted", found({ TYPE: "ext4" }), "fresh", "ext4", { action: "mount", fsType: "ext4" }],
  ] as const)("%s", (_name, probe, label, wanted, plan) => {
    expect(planFilesystem(probe, label, wanted)).toEqual(plan);
  });

  it.each([
    ["a used volume without filesystem (block data)", empty, "in-use", undefined, /has been used before .* refusing to format it/],
    ["a volume from another tool without label", empty, undefined, undefined, /has been used before/],
    ["a different filesystem than requested", found({ TYPE: "xfs" }), "in-use", "ext4", /holds an xfs filesystem but ext4 was requested/],
    ["something that is not a filesystem", found({ TYPE: "LVM2_member", USAGE: "raid" }), "in-use", undefined, /holds LVM2_member raid, not ext4 or xfs/],
    ["conflicting signatures", ambivalent, "fresh", undefined, /conflicting signatures/],
  ] as const)("refuses %s", (_name, probe, label, wanted, reason) => {
    const plan = planFilesystem(probe, label, wanted);
    expect(plan.action).toBe("refuse");
    expect(plan.action === "refuse" && plan.reason).toMatch(reason);
  });
});
