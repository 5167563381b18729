import { describe, expect, it } from "vitest";
import { InvalidArgumentError } from "../lib/errors.js";
import { capability, hostPath, volumeId } from "./validate.js";

describe("volumeId", () => {
  it.each(["vol-1", "pvc-0b8d4c1e-3a07-4f0e-9a43-6e4c0a6b1c5d", "a", "A.b_c-9", "v".repeat(128)])("accepts %s", (id) => {
    expect(volumeId(id)).toBe(id);
  });
  it.each(["", ".", "..", "../x", "a/b", "/abs", "-leading", ".hidden", "a..b", "a b", "vol\u0000", "v".repeat(129), "ü"])("refuses %j", (id) => {
    expect(() => volumeId(id)).toThrow(InvalidArgumentError);
  });
});

describe("hostPath", () => {
  const roots = ["/var/lib/kubelet"];
  it("accepts normal paths below a root", () => {
    expect(hostPath("/var/lib/kubelet/pods/x/volumes/v", "target_path", roots)).toBe("/var/lib/kubelet/pods/x/volumes/v");
  });
  it.each([
    ["", /is required/],
    ["relative", /must be absolute/],
    ["/var/lib/kubelet/../../etc", /normalised/],
    ["/var/lib/kubelet//x", /normalised/],
    ["/var/lib/kubelet/x/", /normalised/],
    ["/var/lib/kubelet", /outside the allowed/],
    ["/var/lib/kubelet-other/x", /outside the allowed/],
    ["/etc/passwd", /outside the allowed/],
    ["/var/lib/kubelet/x\u0000y", /not a valid path/],
  ])("refuses %j", (path, message) => {
    expect(() => hostPath(path, "target_path", roots)).toThrow(message);
  });
});

describe("capability", () => {
  it("reads a mount capability", () => {
    expect(
      capability({ access_type: "mount", mount: { fs_type: "xfs", mount_flags: ["noatime"], volume_mount_group: "" }, access_mode: { mode: "SINGLE_NODE_WRITER" } }),
    ).toEqual({ kind: "mount", fsType: "xfs", mountFlags: ["noatime"], mode: "SINGLE_NODE_WRITER" });
  });
  it("reads a block capability", () => {
    expect(capability({ access_type: "block", block: {}, access_mode: { mode: "SINGLE_NODE_READER_ONLY" } })).toEqual({
      kind: "block",
      mode: "SINGLE_NODE_READER_ONLY",
    });
  });
  it.each([
    [null, /is required/],
    [{ access_type: "mount" as const, mount: { fs_type: "", mount_flags: [], volume_mount_group: "" }, access_mode: null }, /access_mode is required/],
    [{ access_type: "mount" as const, mount: { fs_type: "btrfs", mount_flags: [], volume_mount_group: "" }, access_mode: { mode: "SINGLE_NODE_WRITER" as const } }, /btrfs.*not supported/],
    [{ access_type: "mount" as const, mount: { fs_type: "", mount_flags: ["a b"], volume_mount_group: "" }, access_mode: { mode: "SINGLE_NODE_WRITER" as const } }, /invalid entry/],
    [{ access_mode: { mode: "SINGLE_NODE_WRITER" as const } }, /access type/],
    [{ access_type: "block" as const, block: {}, access_mode: { mode: "MULTI_NODE_READER_ONLY" as const } }, /not supported/],
  ])("refuses %j", (cap, message) => {
    expect(() => capability(cap)).toThrow(message);
  });
});
