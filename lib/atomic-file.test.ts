import { mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { replaceFileAtomic, writeFileAtomic } from "./atomic-file.js";

let dir = "";
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "cloak-atomic-"));
});
afterEach(() => rm(dir, { recursive: true, force: true }));

describe("writeFileAtomic", () => {
  it("writes the content with exactly the mode asked for, whatever the umask", async () => {
    const old = process.umask(0o077);
    try {
      await writeFileAtomic(join(dir, "sub", "cert"), "pem\n", { mode: 0o644 });
    } finally {
      process.umask(old);
    }
    expect(await readFile(join(dir, "sub", "cert"), "utf8")).toBe("pem\n");
    expect((await stat(join(dir, "sub", "cert"))).mode & 0o777).toBe(0o644);
    expect((await stat(join(dir, "sub"))).mode & 0o777).toBe(0o700);
  });

  it("replaces an existing file and leaves no temporary file", async () => {
    await writeFile(join(dir, "record.json"), "old");
    await writeFileAtomic(join(dir, "record.json"), "new");
    expect(await readFile(join(dir, "record.json"), "utf8")).toBe("new");
    expect(await readdir(dir)).toEqual(["record.json"]);
  });
});

describe("replaceFileAtomic", () => {
  it("keeps the old file and removes the temporary one when producing fails", async () => {
    await writeFile(join(dir, "disk.img"), "old");
    await expect(
      replaceFileAtomic(join(dir, "disk.img"), async (tmp) => {
        await writeFile(tmp, "half");
        throw new Error("cp failed");
      }),
    ).rejects.toThrow("cp failed");
    expect(await readFile(join(dir, "disk.img"), "utf8")).toBe("old");
    expect(await readdir(dir)).toEqual(["disk.img"]);
  });
});
