import { mkdtemp, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { UnauthenticatedError } from "../../lib/errors.js";
import { openTokenFile } from "./token-file.js";

const jwt = (exp: number): string =>
  `${Buffer.from('{"alg":"RS256"}').toString("base64url")}.${Buffer.from(JSON.stringify({ exp })).toString("base64url")}.sig`;

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "cloak-token-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** As kubelet writes a projected volume: a new file swapped in by rename. */
async function project(token: string): Promise<void> {
  await writeFile(join(dir, "token.tmp"), token);
  await rename(join(dir, "token.tmp"), join(dir, "token"));
}

describe("the projected token file", () => {
  it("reads the token, and the renewed one once kubelet swaps the file", async () => {
    let now = 1_000_000;
    const file = openTokenFile(join(dir, "token"), { checkMs: 1000, now: () => now });
    const first = jwt(2_000);
    await project(first);
    expect(await file.current()).toBe(first);
    const renewed = jwt(3_000);
    await project(renewed);
    // Within checkMs the cached token is still sent (it is valid); after it, the new one.
    expect(await file.current()).toBe(first);
    now += 1001;
    expect(await file.current()).toBe(renewed);
  });

  it("never sends an expired token, and says why", async () => {
    let now = 1_000_000;
    const file = openTokenFile(join(dir, "token"), { now: () => now });
    await project(jwt(1_500));
    await file.current();
    now = 1_500_000;
    await expect(file.current()).rejects.toThrow(new UnauthenticatedError(`the key service token ${join(dir, "token")} expired at 1970-01-01T00:25:00.000Z and kubelet has not renewed it`));
    await project(jwt(5_000));
    expect(await file.reload()).toBe(jwt(5_000));
  });

  it("refuses a missing or empty file", async () => {
    const file = openTokenFile(join(dir, "token"));
    await expect(file.current()).rejects.toThrow(/cannot be read \(ENOENT\): is the projected token volume mounted\?/);
    await project("\n");
    await expect(file.reload()).rejects.toThrow(/is empty/);
  });
});
