import { describe, expect, it } from "vitest";
import { splitGuestOutput } from "./vm.js";

describe("splitGuestOutput", () => {
  it("takes the marked line as the result and leaves the progress lines", () => {
    const { payloads, other } = splitGuestOutput(["vm: mode vm", "stage 1/5 ...", '@@cloak-bench-result@@ {"a":[1,2]}', ""]);
    expect(payloads).toEqual([{ a: [1, 2] }]);
    expect(other).toEqual(["vm: mode vm", "stage 1/5 ...", ""]);
  });

  it("does not mistake a line that only mentions the marker", () => {
    expect(splitGuestOutput(['log: "@@cloak-bench-result@@ {}"']).payloads).toEqual([]);
  });
});
