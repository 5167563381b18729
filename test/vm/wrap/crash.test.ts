import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MiB, NOTHING, WrapFixture, mountCapability } from "./fixture.js";

// cloak's node process killed (SIGKILL) between each pair of inner and outer steps of a stage
// and an unstage through the wrapper, and the call retried as kubelet would, by the restarted
// process — which has the next step's failpoint armed, so that every retry also survives a
// crash of its own at the next boundary (each inner step is idempotent: a retry that redoes
// one reaches the next boundary in the state a first attempt would). The last retry finishes,
// the data is there, and a full unstage leaves no bind mount, mapping, loop device or inner
// publication behind. The inner driver is in its mapped profile (Ceph RBD-like), which leaves
// the most behind it: a device bound under the staging directory and metadata beside it. The
// LUKS steps between are stage.ts's, cut the same way in test/vm/csi/crash.test.ts.

const fx = new WrapFixture("mapped");
beforeAll(() => fx.setUp(), 900_000);
/** Each test restarts the plugin three or four times (a minute each on a busy machine's VM). */
const RESTARTS_MS = 1_200_000;
afterAll(() => fx.tearDown());
const mount = mountCapability();

const STAGE_STEPS = ["wrap:after-inner-stage", "wrap:after-inner-publish", "stage:after-attach"];
const UNSTAGE_STEPS = ["unstage:after-close", "wrap:after-inner-unpublish", "wrap:after-inner-unstage"];

/** Makes `call` die at the failpoint armed now, then restarts the plugin armed with `next` (or none). */
async function dies(call: () => Promise<unknown>, next: string | undefined): Promise<void> {
  const exited = fx.node.exited;
  await expect(call()).rejects.toMatchObject({ code: status.UNAVAILABLE });
  expect((await exited).signal).toBe("SIGKILL");
  await fx.restartNode(next ? { env: { CLOAK_FAILPOINTS: next } } : {});
}

describe("a volume whose stage and unstage are killed at every boundary between cloak's and the inner driver's steps", () => {
  let id = "";

  it("stages on the retry after each crash", async () => {
    id = (await fx.createVolume("pvc-crash", mount, 32 * MiB)).volume_id;
    await fx.restartNode({ env: { CLOAK_FAILPOINTS: STAGE_STEPS[0] ?? "" } });
    for (const [i] of STAGE_STEPS.entries()) await dies(() => fx.stage(id, mount, {}), STAGE_STEPS[i + 1] ?? UNSTAGE_STEPS[0]);
    await fx.stage(id, mount, {});
    const target = await fx.publish(id, mount);
    await writeFile(join(target, "after-crashes"), "survived");
    expect(await readFile(join(target, "after-crashes"), "utf8")).toBe("survived");
    await fx.unpublish(id);
  }, RESTARTS_MS);

  it("unstages on the retry after each crash, leaving nothing behind", async () => {
    expect(id, "needs the staged volume").not.toBe("");
    for (const [i] of UNSTAGE_STEPS.entries()) await dies(() => fx.unstage(id), UNSTAGE_STEPS[i + 1]);
    await fx.unstage(id);
    expect(await fx.leftovers(id)).toMatchObject({ ...NOTHING, loops: [] });
  }, RESTARTS_MS);

  it("stages again with its data", async () => {
    expect(id, "needs the volume").not.toBe("");
    await fx.stage(id, mount, {});
    expect(await readFile(join(await fx.publish(id, mount), "after-crashes"), "utf8")).toBe("survived");
    await fx.unpublish(id);
    await fx.unstage(id);
    expect(await fx.leftovers(id)).toMatchObject({ ...NOTHING, loops: [] });
  });
});
