import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { firstNonZeroByte } from "./disk-content.js";

const MiB = 1024 * 1024;

describe("firstNonZeroByte", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "cloak-disk-content-"));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function disk(size: number, marks: number[]): Promise<string> {
    const bytes = Buffer.alloc(size);
    for (const at of marks) bytes[at] = 0x5a;
    const path = join(dir, "disk");
    await writeFile(path, bytes);
    return path;
  }

  it("finds nothing on an all-zero disk", async () => {
    expect(await firstNonZeroByte(await disk(8 * MiB, []), 8 * MiB)).toBeUndefined();
  });

  it("finds data in the first MiB", async () => {
    expect(await firstNonZeroByte(await disk(8 * MiB, [4096]), 8 * MiB)).toBe(4096);
  });

  it("finds data in the last MiB (backup GPT headers, md superblocks live there)", async () => {
    expect(await firstNonZeroByte(await disk(8 * MiB, [8 * MiB - 1]), 8 * MiB)).toBe(8 * MiB - 1);
  });

  it("does not read the middle of a large disk", async () => {
    expect(await firstNonZeroByte(await disk(8 * MiB, [4 * MiB]), 8 * MiB)).toBeUndefined();
  });

  it("reads all of a small disk", async () => {
    expect(await firstNonZeroByte(await disk(MiB + 10, [MiB + 5]), MiB + 10)).toBe(MiB + 5);
  });
});
