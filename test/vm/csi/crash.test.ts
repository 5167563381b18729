import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CsiFixture, mapperExists } from "./fixture.js";

// The plugin killed (SIGKILL, as by a node crash or an OOM kill) at every step boundary of a
// stage and an unstage, restarted, and the call retried as kubelet would: the retry must
// finish the job without formatting again and without losing data.

const fx = new CsiFixture();
beforeAll(() => fx.setUp());
afterAll(() => fx.tearDown());

const STAGE_STEPS = [
  "stage:after-attach",
  "stage:after-format",
  "stage:after-open",
  "stage:after-mkfs",
  "stage:after-label",
  "stage:after-mount",
] as const;

describe.each(STAGE_STEPS)("a stage killed at %s", (failpoint) => {
  const id = `vol-crash-${failpoint.replace("stage:", "")}`;

  it("completes on retry with the same LUKS header and a working filesystem", async () => {
    await fx.newVolume(id);
    await fx.restart({ env: { CLOAK_FAILPOINTS: failpoint } });
    const killed = fx.plugin.exited;
    await expect(fx.stage(id)).rejects.toMatchObject({ code: status.UNAVAILABLE });
    expect((await killed).signal).toBe("SIGKILL");
    const uuidAfterCrash = await fx.luksUuid(id);

    await fx.restart();
    await fx.stage(id);
    if (uuidAfterCrash !== undefined) expect(await fx.luksUuid(id)).toBe(uuidAfterCrash);
    const target = await fx.publish(id);
    await writeFile(join(target, "after-crash"), failpoint);
    expect(await readFile(join(target, "after-crash"), "utf8")).toBe(failpoint);
    await fx.unpublish(id);
    await fx.unstage(id);
  });
});

describe("an unstage killed after closing the mapping", () => {
  it("completes on retry", async () => {
    const id = "vol-crash-unstage";
    await fx.newVolume(id);
    await fx.stage(id);
    await fx.restart({ env: { CLOAK_FAILPOINTS: "unstage:after-close" } });
    await expect(fx.unstage(id)).rejects.toMatchObject({ code: status.UNAVAILABLE });
    expect(mapperExists(id)).toBe(false);
    await fx.restart();
    await fx.unstage(id);
    await fx.stage(id);
    await fx.unstage(id);
  });
});

describe("concurrent stages of one volume", () => {
  it("let one through and turn the other away with Aborted", async () => {
    const id = "vol-concurrent";
    await fx.newVolume(id);
    const results = await Promise.allSettled([fx.stage(id), fx.stage(id)]);
    const codes = results.map((r) => (r.status === "fulfilled" ? status.OK : (r.reason as { code: number }).code)).sort();
    expect(codes).toEqual([status.OK, status.ABORTED].sort());
    await fx.stage(id);
    await fx.unstage(id);
  });
});
