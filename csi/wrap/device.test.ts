import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { FailedPreconditionError } from "../../lib/errors.js";
import { blockDeviceAt, checkNoLinkBelow } from "./device.js";

// The wrap node source's path checks on a real directory tree (no devices needed).
describe("the paths cloak gives the inner driver", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "cloak-wrap-device-"));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("may lie under a root that is itself behind a symlink (a kubelet directory moved to another disk)", async () => {
    await mkdir(join(dir, "elsewhere/inner/abc/staging"), { recursive: true });
    await symlink(join(dir, "elsewhere"), join(dir, "kubelet"));
    await expect(checkNoLinkBelow(join(dir, "kubelet/inner"), join(dir, "kubelet/inner/abc/staging"))).resolves.toBeUndefined();
  });

  it("are refused when a directory below the root was replaced by a link", async () => {
    const root = join(dir, "inner");
    await mkdir(join(dir, "outside/staging"), { recursive: true });
    await mkdir(root);
    await symlink(join(dir, "outside"), join(root, "abc"));
    await expect(checkNoLinkBelow(root, join(root, "abc/staging"))).rejects.toThrow(FailedPreconditionError);
    await expect(checkNoLinkBelow(root, join(root, "abc/staging"))).rejects.toThrow(/replaced by a link/);
  });

  it("must hold a block device: a regular file and a symbolic link are refused with what they are", async () => {
    await writeFile(join(dir, "file"), "");
    await expect(blockDeviceAt(join(dir, "file"), dir)).rejects.toThrow(/placed a regular file at .* not a block device/);
    await symlink("/dev/null", join(dir, "link"));
    await expect(blockDeviceAt(join(dir, "link"), dir)).rejects.toThrow(/placed a symbolic link at .*to \/dev\/null/);
    await expect(blockDeviceAt(join(dir, "nothing"), dir)).rejects.toThrow(/placed nothing at/);
  });
});
