import { describe } from "vitest";
import { netdScenarios } from "../../netns/netd-scenarios.js";

// The same scenarios as the host tier, on kernel WireGuard, with IPv4 endpoints (the host tier
// covers IPv6 ones). Everything runs inside the guest: API server, etcd, testbed and netd.
describe("netd mesh on kernel WireGuard (VM tier)", () => {
  netdScenarios({ tier: "vm", implementation: "kernel", endpointFamily: "ipv4" });
});
