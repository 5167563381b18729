import { describe, expect, it } from "vitest";
import { formatStatus } from "./status-format.js";

describe("formatStatus", () => {
  it("prints one row per peer with handshake age and state", () => {
    const text = formatStatus(
      {
        node: "n1", iface: "cloak-wg0", implementation: "kernel", publicKey: "PUB=", listenPort: 51872, synced: true,
        lastReconcile: "2026-11-25T10:00:00.000Z", lastError: undefined, statsAt: "2026-11-25T10:00:00.000Z",
        peers: [
          { node: "n2", publicKey: "A=", endpoint: "192.0.2.12:51872", allowedIPs: ["198.51.100.64/26"], latestHandshake: 1_000, rxBytes: 5, txBytes: 7 },
          { node: undefined, publicKey: "B=", endpoint: undefined, allowedIPs: [], latestHandshake: 0, rxBytes: 0, txBytes: 0 },
        ],
        skipped: [{ node: "n3", reason: "no public key published yet" }],
        conflicts: [],
      },
      1_030,
    );
    expect(text).toContain("node n1  interface cloak-wg0 (kernel)  port 51872");
    expect(text).toMatch(/^n2\s+192\.0\.2\.12:51872\s+30s ago\s+up\s+7\s+5\s+198\.51\.100\.64\/26$/m);
    expect(text).toMatch(/^\?\s+-\s+never\s+down/m);
    expect(text).toContain("skipped n3: no public key published yet");
  });
});
