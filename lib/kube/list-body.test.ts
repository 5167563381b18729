import { describe, expect, it } from "vitest";
import { LineSplitter, ListBodySplitter } from "./list-body.js";

/** Feeds `text` in chunks of `size` bytes (cutting UTF-8 sequences and escapes anywhere). */
function split(text: string, size: number): { items: unknown[]; body: Record<string, unknown>; count: number } {
  const items: unknown[] = [];
  const s = new ListBodySplitter((item) => items.push(item));
  const bytes = Buffer.from(text);
  for (let i = 0; i < bytes.length; i += size) s.push(bytes.subarray(i, i + size));
  const { body, items: count } = s.end();
  return { items, body, count };
}

const tricky = [
  { metadata: { name: "a", annotations: { quote: 'say "hi"', backslash: "C:\\dir\\", brace: "}{][,", unicode: "é✓🔑" } }, spec: { podCIDRs: ["10.0.0.0/24"] } },
  { metadata: { name: "b", labels: { "items": "[1,2]" } }, status: { addresses: [{ type: "InternalIP", address: "fd00::1" }] } },
  { metadata: { name: "c" }, nested: [[{ deep: [{}] }], "\\\\\"", []] },
];

describe("ListBodySplitter", () => {
  const list = { kind: "NodeList", apiVersion: "v1", metadata: { resourceVersion: "4711", continue: "tok\"en" }, items: tricky };

  it.each([1, 2, 3, 7, 64, 1 << 20])("hands over each item and keeps the rest, in chunks of %i bytes", (size) => {
    const { items, body, count } = split(JSON.stringify(list, null, size % 2 ? 0 : 2), size);
    expect(items).toEqual(tricky);
    expect(count).toBe(3);
    expect(body).toEqual({ ...list, items: [] });
  });

  it("finds items wherever it stands among the keys, and only at the top level", () => {
    const text = `{"metadata":{"items":[{"not":"this"}]},"items":[{"x":1},{"x":2}],"kind":"NodeList"}`;
    const { items, body } = split(text, 5);
    expect(items).toEqual([{ x: 1 }, { x: 2 }]);
    expect(body).toEqual({ metadata: { items: [{ not: "this" }] }, items: [], kind: "NodeList" });
  });

  it("handles an empty list and a list without items", () => {
    expect(split(`{"kind":"NodeList","items":[]}`, 3)).toMatchObject({ items: [], count: 0 });
    expect(split(`{"kind":"NodeList","metadata":{}}`, 3)).toMatchObject({ items: [], body: { kind: "NodeList", metadata: {} } });
  });

  it.each([
    [`{"items":[{"a":1}`, /ended early/],
    [`{"items":[{"a":"x`, /ended early/],
    [`{"items":[1,2]}`, /not an object/],
    [`{"items":[{"a":1}]}}`, /unbalanced/],
    [`[{"a":1}]`, /not an object/],
  ])("refuses %s", (text, error) => {
    expect(() => split(text, 4)).toThrow(error);
  });
});

describe("LineSplitter", () => {
  it("parses one event per line, across chunks, with or without a final newline", () => {
    const events: unknown[] = [];
    const s = new LineSplitter((e) => events.push(e));
    const text = `{"type":"ADDED","object":{"n":"é"}}\r\n\n{"type":"BOOKMARK","object":{}}\n{"type":"DELETED"}`;
    const bytes = Buffer.from(text);
    for (let i = 0; i < bytes.length; i += 3) s.push(bytes.subarray(i, i + 3));
    s.end();
    expect(events).toEqual([{ type: "ADDED", object: { n: "é" } }, { type: "BOOKMARK", object: {} }, { type: "DELETED" }]);
  });
});
