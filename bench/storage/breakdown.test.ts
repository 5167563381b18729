import { describe, expect, it } from "vitest";
import { breakdownCall, commandName, type LogLine } from "./breakdown.js";

// Shaped as the plugin logs them (lib/grpc-handler.ts "request"/"call", lib/exec.ts "command").
const lines: LogLine[] = [
  { level: 20, component: "csi", method: "csi.v1.Node/NodeStageVolume", volume_id: "v1", msg: "request" },
  { level: 20, component: "csi", scope: "exec", cmd: "losetup --noheadings --output NAME --associated /v/v1.img", exitCode: 0, ms: 120, msg: "command" },
  { level: 20, component: "csi", scope: "exec", cmd: "losetup --find --show /v/v1.img", exitCode: 0, ms: 150, msg: "command" },
  { level: 20, component: "csi", scope: "exec", cmd: "cryptsetup open --type luks2 --key-file - /dev/loop0 cloak-v1", exitCode: 0, ms: 900, msg: "command" },
  { level: 30, component: "csi", mapper: "cloak-v1", msg: "opened" },
  { level: 30, component: "csi", method: "csi.v1.Node/NodeStageVolume", volume_id: "v1", code: "OK", ms: 1300, msg: "call" },
  { level: 20, component: "csi", method: "csi.v1.Node/NodeUnstageVolume", volume_id: "v1", msg: "request" },
  { level: 20, component: "csi", scope: "exec", cmd: "umount /k/staging/v1", exitCode: 0, ms: 80, msg: "command" },
];

describe("breakdownCall", () => {
  it("collects the commands logged before the call's line and the time outside them", () => {
    const found = breakdownCall(lines, 0, "NodeStageVolume", "v1");
    expect(found).toEqual({
      serverMs: 1300,
      commands: [
        { name: "losetup --associated", ms: 120 },
        { name: "losetup --find", ms: 150 },
        { name: "cryptsetup open", ms: 900 },
      ],
      outsideCommandsMs: 130,
    });
  });

  it("is undefined until the call's line has arrived", () => {
    expect(breakdownCall(lines, 6, "NodeUnstageVolume", "v1")).toBeUndefined();
    expect(breakdownCall(lines, 0, "NodeStageVolume", "v2")).toBeUndefined();
  });

  it("turns a failed call into an error carrying the server's reason", () => {
    const failed: LogLine[] = [{ method: "csi.v1.Node/NodeStageVolume", volume_id: "v1", code: "INTERNAL", err: "mount failed", msg: "call failed" }];
    expect(() => breakdownCall(failed, 0, "NodeStageVolume", "v1")).toThrow(/mount failed/);
  });
});

describe("commandName", () => {
  it.each([
    ["cryptsetup luksDump --dump-json-metadata /dev/loop0", "cryptsetup luksDump"],
    ["losetup --detach /dev/loop3", "losetup --detach"],
    ["blkid -p -o export /dev/mapper/cloak-v1", "blkid -p"],
    ["blockdev --getsize64 /dev/loop0", "blockdev --getsize64"],
    ["mkfs.ext4 -q /dev/mapper/cloak-v1", "mkfs.ext4"],
    ["/usr/bin/mount -t ext4 /dev/loop0 /k", "mount"],
  ])("%s", (argv, name) => {
    expect(commandName(argv)).toBe(name);
  });
});
