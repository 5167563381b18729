import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MiB, NOTHING, WrapFixture, mountCapability } from "./fixture.js";

// cloak's node process killed (SIGKILL) between each pair of inner and outer steps of a stage
// and an unstage through the wrapper, restarted, and the call retried as kubelet would: the
// retry finishes, and a full unstage leaves no bind mount, mapping, loop device or inner
// publication behind. The inner driver is in its mapped profile (Ceph RBD-like), which leaves
// the most behind it: a device bound under the staging directory and metadata beside it.
// The LUKS steps between them are stage.ts's, cut the same way in test/vm/csi/crash.test.ts.

const fx = new WrapFixture("mapped");
beforeAll(() => fx.setUp());
afterAll(() => fx.tearDown());
const mount = mountCapability();

const STAGE_STEPS = ["wrap:after-inner-stage", "wrap:after-inner-publish", "stage:after-attach"] as const;
const UNSTAGE_STEPS = ["unstage:after-close", "wrap:after-inner-unpublish", "wrap:after-inner-unstage"] as const;

async function killedAt(failpoint: string, call: () => Promise<unknown>): Promise<void> {
  await fx.restartNode({ env: { CLOAK_FAILPOINTS: failpoint } });
  const exited = fx.node.exited;
  await expect(call()).rejects.toMatchObject({ code: status.UNAVAILABLE });
  expect((await exited).signal).toBe("SIGKILL");
  await fx.restartNode();
}

describe.each(STAGE_STEPS)("a stage killed at %s", (failpoint) => {
  it("completes on retry; the volume works; unstaging leaves nothing", async () => {
    const id = (await fx.createVolume(`pvc-crash-${failpoint.replace(/\W/g, "-")}`, mount, 32 * MiB)).volume_id;
    await killedAt(failpoint, () => fx.stage(id, mount, {}));
    await fx.stage(id, mount, {});
    const target = await fx.publish(id, mount);
    await writeFile(join(target, "after-crash"), failpoint);
    expect(await readFile(join(target, "after-crash"), "utf8")).toBe(failpoint);
    await fx.unpublish(id);
    await fx.unstage(id);
    expect(await fx.leftovers(id)).toMatchObject({ ...NOTHING, loops: [] });
  });
});

describe.each(UNSTAGE_STEPS)("an unstage killed at %s", (failpoint) => {
  it("completes on retry, leaving nothing, and the volume stages again with its data", async () => {
    const id = (await fx.createVolume(`pvc-crash-${failpoint.replace(/\W/g, "-")}`, mount, 32 * MiB)).volume_id;
    await fx.stage(id, mount, {});
    const target = await fx.publish(id, mount);
    await writeFile(join(target, "before-crash"), failpoint);
    await fx.unpublish(id);
    await killedAt(failpoint, () => fx.unstage(id));
    await fx.unstage(id);
    expect(await fx.leftovers(id)).toMatchObject({ ...NOTHING, loops: [] });
    await fx.stage(id, mount, {});
    expect(await readFile(join(await fx.publish(id, mount), "before-crash"), "utf8")).toBe(failpoint);
    await fx.unpublish(id);
    await fx.unstage(id);
  });
});
