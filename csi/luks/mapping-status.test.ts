import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { mappingStatus } from "./luks-device.js";

describe("mappingStatus (a fake /sys/block)", () => {
  let sys: string;
  beforeEach(async () => {
    sys = await mkdtemp(join(tmpdir(), "cloak-sysblock-"));
    for (const [dm, name, slave] of [["dm-0", "other", "sda"], ["dm-3", "cloak-vol-1", "loop7"]] as const) {
      await mkdir(join(sys, dm, "dm"), { recursive: true });
      await mkdir(join(sys, dm, "slaves", slave), { recursive: true });
      await writeFile(join(sys, dm, "dm", "name"), `${name}\n`);
    }
    await mkdir(join(sys, "loop7"));
    // An integrity volume: the crypt mapping on its dm-integrity mapping on the disk.
    for (const [dm, name, slave] of [["dm-5", "cloak-vol-i_dif", "loop8"], ["dm-6", "cloak-vol-i", "dm-5"]] as const) {
      await mkdir(join(sys, dm, "dm"), { recursive: true });
      await mkdir(join(sys, dm, "slaves", slave), { recursive: true });
      await writeFile(join(sys, dm, "dm", "name"), `${name}\n`);
    }
  });
  afterEach(() => rm(sys, { recursive: true, force: true }));

  it("finds an open mapping and the device under it", async () => {
    expect(await mappingStatus("cloak-vol-1", sys)).toEqual({ active: true, device: "/dev/loop7" });
  });

  it("follows a stack of mappings down to the disk", async () => {
    expect(await mappingStatus("cloak-vol-i", sys)).toEqual({ active: true, device: "/dev/loop8" });
  });

  it("reports a mapping that is not there as inactive", async () => {
    expect(await mappingStatus("cloak-vol-2", sys)).toEqual({ active: false });
  });

  it("reports nothing open where device-mapper is absent", async () => {
    expect(await mappingStatus("cloak-vol-1", join(sys, "missing"))).toEqual({ active: false });
  });
});
