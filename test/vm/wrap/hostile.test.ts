import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MiB, NOTHING, WrapFixture, mountCapability, type Hostile } from "./fixture.js";

// A wrapped driver that misbehaves at NodePublish (the block test driver's --hostile modes):
// cloak answers with a clear status, formats nothing, and leaves nothing behind — no mount, no
// mapping, no directory, no inner publication, no attached loop device.

const fx = new WrapFixture("bind");
beforeAll(() => fx.setUp());
afterAll(() => fx.tearDown());
const mount = mountCapability();

const REFUSALS: [Hostile, RegExp][] = [
  ["non-block", /placed a regular file at .*, not a block device: cloak wraps only drivers that serve block volumes/],
  ["symlink", /placed a symbolic link at .* \(to \/dev\/loop\d+\), not a block device/],
  ["data", /holds ext4 filesystem .*refusing to format it/],
];

describe.each(REFUSALS)("an inner driver that publishes %s", (hostile, message) => {
  it("gets FailedPrecondition, and its publication is undone", async () => {
    await fx.restartDriver(hostile);
    const id = (await fx.createVolume(`pvc-hostile-${hostile}`, mount, 32 * MiB)).volume_id;
    const before = await fx.sha256(fx.imageOf(id));
    await expect(fx.stage(id, mount, {})).rejects.toMatchObject({ code: status.FAILED_PRECONDITION, details: expect.stringMatching(message) });
    expect(await fx.sha256(fx.imageOf(id))).toBe(before);
    expect(await fx.leftovers(id)).toMatchObject({ ...NOTHING, loops: [] });
  });
});

describe("an inner driver that hangs in NodePublishVolume", () => {
  it("is DeadlineExceeded before kubelet's deadline, naming the call; kubelet's unstage then cleans up", async () => {
    await fx.restartDriver("hang");
    const id = (await fx.createVolume("pvc-hostile-hang", mount, 32 * MiB)).volume_id;
    const started = Date.now();
    await expect(fx.stage(id, mount, {}, {}, 10_000)).rejects.toMatchObject({
      code: status.DEADLINE_EXCEEDED,
      details: expect.stringMatching(/NodePublishVolume did not answer within/),
    });
    expect(Date.now() - started).toBeLessThan(10_000);
    // DeadlineExceeded is not final: kubelet keeps the stage "uncertain" and unstages it.
    await fx.unstage(id);
    expect(await fx.leftovers(id)).toMatchObject({ ...NOTHING, loops: [] });
  });
});

describe("the same driver, behaving again", () => {
  it("is reached over the same channel after its restart, and stages", async () => {
    await fx.restartDriver(undefined);
    const id = (await fx.createVolume("pvc-hostile-none", mount, 32 * MiB)).volume_id;
    await fx.stage(id, mount, {});
    await fx.unstage(id);
    expect(await fx.leftovers(id)).toMatchObject({ ...NOTHING, loops: [] });
  });
});
