import { describe, expect, it } from "vitest";
import { InvalidArgumentError } from "../../lib/errors.js";
import { KEY_ID_CONTEXT_KEY, keyIdContext, keyIdFor, keyIdFromContext, newKeyId } from "./binding.js";
import { memberLabel } from "./lineage.js";

describe("key binding", () => {
  it("gives a new volume a new UUID and a copy its source's", () => {
    const a = newKeyId();
    expect(a).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(keyIdFor(undefined)).not.toBe(a);
    expect(keyIdFor({ keyId: a })).toBe(a);
  });

  it("round-trips the key id through the volume context, and refuses a malformed one", () => {
    const id = newKeyId();
    expect(keyIdContext(id)).toEqual({ "cloak.dev/key-id": id });
    expect(keyIdContext(undefined)).toEqual({});
    expect(keyIdFromContext({ fsType: "ext4", ...keyIdContext(id) })).toBe(id);
    expect(keyIdFromContext({ fsType: "ext4" })).toBeUndefined();
    expect(() => keyIdFromContext({ [KEY_ID_CONTEXT_KEY]: "../etc" })).toThrow(InvalidArgumentError);
    expect(() => keyIdFromContext({ [KEY_ID_CONTEXT_KEY]: id.toUpperCase() })).toThrow(/not a lowercase UUID/);
  });

  it("labels members with a valid, stable label name per driver, kind and id", () => {
    const label = memberLabel("csi.cloak.dev", { kind: "volume", id: "projects/p/zones/z/disks/" + "d".repeat(200) });
    expect(label).toMatch(/^volume\.cloak\.dev\/[0-9a-f]{40}$/);
    expect(memberLabel("csi.cloak.dev", { kind: "snapshot", id: "x" })).toMatch(/^snapshot\.cloak\.dev\//);
    expect(memberLabel("a", { kind: "volume", id: "x" })).not.toBe(memberLabel("b", { kind: "volume", id: "x" }));
  });
});
