import { mkdir, mkdtemp, realpath, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InvalidArgumentError } from "../lib/errors.js";
import { capability, hostPath, resolvedHostPath, volumeId } from "./validate.js";

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

describe("resolvedHostPath", () => {
  let root: string;
  beforeAll(async () => {
    root = await realpath(await mkdtemp(join(tmpdir(), "cloak-paths-")));
    await mkdir(join(root, "kubelet", "pods"), { recursive: true });
    await mkdir(join(root, "outside"));
    await symlink(join(root, "outside"), join(root, "kubelet", "escape"));
    await symlink(join(root, "kubelet", "pods"), join(root, "kubelet", "inside"));
    await symlink(join(root, "missing"), join(root, "kubelet", "dangling"));
    await symlink(join(root, "kubelet"), join(root, "kubelet-link"));
  });
  afterAll(() => rm(root, { recursive: true, force: true }));
  const roots = (): string[] => [join(root, "kubelet")];

  it("resolves the existing part and keeps the rest", async () => {
    expect(await resolvedHostPath(join(root, "kubelet", "pods", "a", "b"), "p", roots())).toBe(join(root, "kubelet", "pods", "a", "b"));
    expect(await resolvedHostPath(join(root, "kubelet", "inside", "a"), "p", roots())).toBe(join(root, "kubelet", "pods", "a"));
  });

  it("refuses a path whose parent leads out of the root", async () => {
    await expect(resolvedHostPath(join(root, "kubelet", "escape", "staging"), "p", roots())).rejects.toThrow(
      /leads through a symlink to ".*\/outside\/staging", outside the allowed directories/,
    );
  });

  it("refuses a dangling symlink on the way", async () => {
    await expect(resolvedHostPath(join(root, "kubelet", "dangling", "x"), "p", roots())).rejects.toThrow(/dangling symlink/);
  });

  it("accepts paths below a root that is itself a symlink", async () => {
    const linked = [join(root, "kubelet-link")];
    expect(await resolvedHostPath(join(root, "kubelet-link", "pods", "x"), "p", linked)).toBe(join(root, "kubelet", "pods", "x"));
  });
});
