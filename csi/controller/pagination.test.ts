import { describe, expect, it } from "vitest";
import { AbortedError } from "../../lib/errors.js";
import { page } from "./pagination.js";

const ids = ["a", "b", "c", "d", "e"];
const id = (s: string): string => s;

describe("page", () => {
  it("returns everything without max_entries", () => {
    expect(page(ids, id, { maxEntries: 0, startingToken: "" })).toEqual({ entries: ids, nextToken: "" });
  });

  it("walks all pages with tokens", () => {
    const first = page(ids, id, { maxEntries: 2, startingToken: "" });
    expect(first.entries).toEqual(["a", "b"]);
    const second = page(ids, id, { maxEntries: 2, startingToken: first.nextToken });
    expect(second.entries).toEqual(["c", "d"]);
    const third = page(ids, id, { maxEntries: 2, startingToken: second.nextToken });
    expect(third).toEqual({ entries: ["e"], nextToken: "" });
  });

  it("continues after the entry a token names was deleted", () => {
    const first = page(ids, id, { maxEntries: 2, startingToken: "" });
    expect(page(["a", "b", "d", "e"], id, { maxEntries: 2, startingToken: first.nextToken }).entries).toEqual(["d", "e"]);
  });

  it("refuses a token it did not issue with Aborted", () => {
    expect(() => page(ids, id, { maxEntries: 2, startingToken: "invalid-token" })).toThrow(AbortedError);
  });
});
