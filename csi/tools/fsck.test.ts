import { describe, expect, it } from "vitest";
import { check, interpret } from "./fsck.js";

const result = (exitCode: number, stdout = "", stderr = "") => ({ exitCode, stdout, stderr });

describe("filesystem checks", () => {
  it("preens ext4 and only looks at xfs", () => {
    expect(check("ext4", "/dev/mapper/v")).toMatchObject({ file: "e2fsck", args: ["-p", "/dev/mapper/v"] });
    expect(check("xfs", "/dev/mapper/v")).toMatchObject({ file: "xfs_repair", args: ["-n", "/dev/mapper/v"] });
  });

  it.each([
    ["ext4", result(0), "clean"],
    ["ext4", result(1, "/dev/mapper/v: Entry 'x' in / (2) has deleted/unused inode 13.  CLEARED."), "repaired"],
    ["ext4", result(2), "repaired"],
    ["ext4", result(4, "/dev/mapper/v: Root inode is not a directory.\n\n/dev/mapper/v: UNEXPECTED INCONSISTENCY; RUN fsck MANUALLY."), "needs-repair"],
    ["xfs", result(0), "clean"],
    ["xfs", result(1, "", "ERROR: The filesystem has valuable metadata changes in a log which is being ignored because the -n option was used."), "log-to-replay"],
    ["xfs", result(1, "", "bad magic number 0x0 on inode 128"), "needs-repair"],
  ] as const)("reads %s's answer %j as %s", (fs, answer, verdict) => {
    expect(interpret(fs, answer).verdict).toBe(verdict);
  });

  it("keeps the checker's last lines as the reason", () => {
    const verdict = interpret("ext4", result(4, "a\nb\nRoot inode is not a directory.\n\nUNEXPECTED INCONSISTENCY; RUN fsck MANUALLY."));
    expect(verdict).toEqual({ verdict: "needs-repair", detail: "a; b; Root inode is not a directory.; UNEXPECTED INCONSISTENCY; RUN fsck MANUALLY." });
  });
});
