import { describe, expect, it } from "vitest";
import { LineBatcher } from "./log-batch.js";

describe("LineBatcher", () => {
  it("hands lines over in batches: when they fill maxBytes, after maxDelayMs, and on close", async () => {
    const writes: string[] = [];
    const b = new LineBatcher({ write: (t: string) => writes.push(t) }, { maxBytes: 10, maxDelayMs: 30 });
    b.write("aaaa\n");
    expect(writes).toEqual([]);
    b.write("bbbbbb\n");
    expect(writes).toEqual(["aaaa\nbbbbbb\n"]);
    b.write("c\n");
    await new Promise((r) => setTimeout(r, 80));
    expect(writes).toEqual(["aaaa\nbbbbbb\n", "c\n"]);
    b.write("d\n");
    b.close();
    expect(writes.at(-1)).toBe("d\n");
    // After close every line goes out at once: nothing waits for a timer that no longer runs.
    b.write("e\n");
    expect(writes.at(-1)).toBe("e\n");
  });
});
