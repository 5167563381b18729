import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { RecordStore } from "./record-store.js";

interface Note {
  readonly id: string;
  readonly text: string;
}

function parseNote(value: unknown): Note {
  const v = value as Partial<Note> | null;
  if (typeof v?.id !== "string" || typeof v.text !== "string") throw new Error("not a note");
  return { id: v.id, text: v.text };
}

describe("RecordStore", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "cloak-records-"));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it("reloads what it stored", async () => {
    const store = await RecordStore.open(dir, parseNote);
    await store.put({ id: "b", text: "two" });
    await store.put({ id: "a", text: "one" });
    const again = await RecordStore.open(dir, parseNote);
    expect(again.list()).toEqual([{ id: "a", text: "one" }, { id: "b", text: "two" }]);
  });

  it("moves unreadable records to quarantine/, reports each, and serves the rest", async () => {
    const store = await RecordStore.open(dir, parseNote);
    await store.put({ id: "good", text: "kept" });
    await writeFile(join(dir, "torn.json"), '{"id": "torn", "te');
    await writeFile(join(dir, "wrong-shape.json"), '{"id": 7}');
    await writeFile(join(dir, "elsewhere.json"), '{"id": "other", "text": "x"}');

    const reports: { path: string; reason: string }[] = [];
    const reopened = await RecordStore.open(dir, parseNote, { onQuarantine: (path, reason) => reports.push({ path, reason }) });

    expect(reopened.list()).toEqual([{ id: "good", text: "kept" }]);
    expect(reports.map((r) => r.path).sort()).toEqual(
      ["elsewhere.json", "torn.json", "wrong-shape.json"].map((name) => join(dir, "quarantine", name)),
    );
    expect(reports.find((r) => r.path.endsWith("torn.json"))?.reason).toMatch(/JSON/);
    expect(reports.find((r) => r.path.endsWith("wrong-shape.json"))?.reason).toBe("not a note");
    expect(reports.find((r) => r.path.endsWith("elsewhere.json"))?.reason).toMatch(/holds the record of "other"/);
    // Moved, not deleted: the bytes are there for an admin to read.
    expect(await readFile(join(dir, "quarantine", "torn.json"), "utf8")).toBe('{"id": "torn", "te');
    expect((await readdir(dir)).sort()).toEqual(["good.json", "quarantine"]);
  });

  it("keeps an earlier quarantined copy when the same name goes bad again", async () => {
    await writeFile(join(dir, "x.json"), "first");
    await RecordStore.open(dir, parseNote);
    await writeFile(join(dir, "x.json"), "second");
    const paths: string[] = [];
    await RecordStore.open(dir, parseNote, { onQuarantine: (path) => paths.push(path) });
    expect(paths).toEqual([join(dir, "quarantine", "x.json.1")]);
    expect(await readFile(join(dir, "quarantine", "x.json"), "utf8")).toBe("first");
  });

  it("removes temporary files an interrupted write left", async () => {
    await writeFile(join(dir, ".tmp-a.json-1234"), "half");
    await RecordStore.open(dir, parseNote);
    expect(await readdir(dir)).toEqual([]);
  });
});
