import { describe, expect, it } from "vitest";
import { join } from "node:path";
import { packageRoot } from "../../lib/paths.js";
import { testRunner } from "./kube.js";

// `make demo-network` is a deliverable: run it as a person would and check the evidence it
// prints. It also proves what the other files can only ask the API server: the real netd,
// running as the manifests' service account with pod-bound tokens, passes their RBAC and
// admission policy, and the policy stops it at another node's key.
describe("demo/network.sh", () => {
  it("shows the message on the wire without netd, only WireGuard with it, and the policy refusing a foreign key", async () => {
    const started = Date.now();
    const r = await testRunner()({ file: join(packageRoot(), "demo/network.sh"), args: [], okExitCodes: [1], timeoutMs: 240_000 });
    const out = r.stdout;
    expect(r.exitCode, `${out}\n${r.stderr}`).toBe(0);
    expect(out).toMatch(/\[2\] Without netd[\s\S]*payload: \.\.\.CLOAK-DEMO: meet at the old bridge/);
    expect(out).toMatch(/\[4\] With netd[\s\S]*delivered: yes[\s\S]*IP 192\.0\.2\.11\.51872 > 192\.0\.2\.12\.51872: UDP, length \d+/);
    expect(out).toContain("packets that are not WireGuard (UDP port 51872): 0");
    expect(out).toContain("bytes of the message anywhere in the capture: none");
    expect(out).toMatch(/denied request: netd on node n1 may not change Node n2/);
    expect(out).toContain("Result: pod-to-pod traffic crossed the wire encrypted");
    // Under the two minutes promised, with room for a busy machine.
    expect(Date.now() - started).toBeLessThan(120_000);
    // It cleaned up after itself.
    const netns = await testRunner()({ file: "ip", args: ["netns", "list"] });
    expect(netns.stdout).not.toContain("cloak-demo-");
  }, 240_000);
});
