import { describe, expect, it } from "vitest";
import { redactSecrets } from "./grpc-handler.js";

describe("redactSecrets", () => {
  it("blanks the values of every secrets map, at any depth, and keeps the rest", () => {
    const request = {
      volume_id: "vol-1",
      secrets: { password: "hunter2", token: "t" },
      nested: [{ secrets: { key: "k" }, keep: 1 }],
    };
    expect(redactSecrets(request)).toEqual({
      volume_id: "vol-1",
      secrets: { password: "[redacted]", token: "[redacted]" },
      nested: [{ secrets: { key: "[redacted]" }, keep: 1 }],
    });
    expect(request.secrets.password).toBe("hunter2");
  });
});
