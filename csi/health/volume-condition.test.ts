import { describe, expect, it } from "vitest";
import type { CallContext } from "../../lib/grpc-handler.js";
import type { KeySourceState } from "./key-source-monitor.js";
import { withKeySourceCondition } from "./volume-condition.js";

const context = {} as CallContext;
const request = { volume_id: "vol-1", volume_path: "/var/lib/kubelet/x", staging_target_path: "" };

function node(condition: { abnormal: boolean; message: string }) {
  return {
    NodeGetVolumeStats: async () => ({ usage: [{ unit: "BYTES" as const, total: 1 }], volume_condition: condition }),
    NodeGetInfo: async () => ({ node_id: "n1" }),
  };
}

describe("the key source in the volume condition", () => {
  const healthy = { abnormal: false, message: "encrypted volume is open and its header matches policy" };

  it.each([
    ["ready", { ready: true, since: 0 }],
    ["not probed yet", { ready: undefined, since: 0 }],
  ] as const)("leaves the condition alone while the key source is %s", async (_name, state: KeySourceState) => {
    const wrapped = withKeySourceCondition(node(healthy), () => state);
    expect((await wrapped.NodeGetVolumeStats?.(request, context))?.volume_condition).toEqual(healthy);
  });

  it("reports the volume abnormal while the key source does not answer, saying what still works", async () => {
    const state = { ready: false, since: Date.UTC(2026, 0, 2, 3, 4, 5), error: "key service k:9000 does not answer" };
    const wrapped = withKeySourceCondition(node(healthy), () => state);
    const response = await wrapped.NodeGetVolumeStats?.(request, context);
    expect(response?.usage).toEqual([{ unit: "BYTES", total: 1 }]);
    expect(response?.volume_condition).toEqual({
      abnormal: true,
      message:
        "the key source does not answer (key service k:9000 does not answer) since 2026-01-02T03:04:05.000Z: " +
        "the volume stays readable and writable while staged, but cannot be staged again until it answers",
    });
  });

  it("keeps what the node service found first", async () => {
    const wrapped = withKeySourceCondition(node({ abnormal: true, message: "the decrypted device is gone" }), () => ({ ready: false, since: 0 }));
    const message = (await wrapped.NodeGetVolumeStats?.(request, context))?.volume_condition?.message;
    expect(message).toMatch(/^the decrypted device is gone; the key source does not answer \(not ready\)/);
  });

  it("passes the other handlers through", () => {
    const inner = node(healthy);
    expect(withKeySourceCondition(inner, () => ({ ready: false, since: 0 })).NodeGetInfo).toBe(inner.NodeGetInfo);
  });
});
