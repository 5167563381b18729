import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, stat, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ExecError, type Runner } from "../../../lib/exec.js";
import { createLogger } from "../../../lib/log.js";
import { resumableCopy } from "./resumable-copy.js";

const MiB = 1024 * 1024;
const log = createLogger({ component: "test", level: "silent" });
/** A filesystem without reflink, as ext4 and tmpfs are: cp --reflink=always fails. */
const noReflink: Runner = async (command) => {
  throw new ExecError(command.file, 1, "failed to clone: Operation not supported");
};

describe("resumableCopy", () => {
  let dir: string;
  let source: string;
  let partial: string;
  let progressFile: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "cloak-copy-"));
    source = join(dir, "source.img");
    partial = join(dir, "target.img.partial");
    progressFile = join(dir, "target.img.progress");
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  const copy = (onProgress?: (p: { copiedBytes: number; totalBytes: number }) => void) =>
    resumableCopy({ source, partial, progressFile, run: noReflink, log, onProgress, progressEveryBytes: 4 * MiB });

  it("copies every byte, keeps zero chunks as holes, and records its progress", async () => {
    const data = Buffer.concat([randomBytes(4 * MiB), Buffer.alloc(8 * MiB), randomBytes(MiB + 17)]);
    await writeFile(source, data);
    const seen: number[] = [];
    await copy((p) => seen.push(p.copiedBytes));
    expect((await readFile(partial)).equals(data)).toBe(true);
    // The 8 MiB of zeros (two whole chunks) take no space.
    expect((await stat(partial)).blocks * 512).toBeLessThan(data.length - 7 * MiB);
    expect(seen).toEqual([4 * MiB, 8 * MiB, 12 * MiB, data.length]);
    expect(JSON.parse(await readFile(progressFile, "utf8"))).toMatchObject({ copiedBytes: data.length });
  });

  it("continues from the recorded progress when the source is unchanged, dropping bytes written after it", async () => {
    const data = randomBytes(10 * MiB);
    await writeFile(source, data);
    await copy();
    const saved = JSON.parse(await readFile(progressFile, "utf8")) as { source: object };
    // As if an attempt had recorded 4 MiB and written garbage past them before dying. The
    // first 4 MiB are marked, to see that they are not copied again.
    await writeFile(progressFile, JSON.stringify({ ...saved, copiedBytes: 4 * MiB }));
    await writeFile(partial, Buffer.alloc(data.length, 0xee));
    await copy();
    const copied = await readFile(partial);
    expect(copied.subarray(0, 4 * MiB).equals(Buffer.alloc(4 * MiB, 0xee))).toBe(true);
    expect(copied.subarray(4 * MiB).equals(data.subarray(4 * MiB))).toBe(true);
  });

  it("starts again when the source changed since the progress was recorded", async () => {
    await writeFile(source, randomBytes(4 * MiB));
    await copy();
    const saved = JSON.parse(await readFile(progressFile, "utf8")) as object;
    await writeFile(progressFile, JSON.stringify({ ...saved, copiedBytes: 2 * MiB }));
    const changed = randomBytes(4 * MiB);
    await writeFile(source, changed);
    await utimes(source, new Date(), new Date(Date.now() + 5_000));
    await copy();
    expect((await readFile(partial)).equals(changed)).toBe(true);
  });
});
