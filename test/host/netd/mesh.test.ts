import { describe } from "vitest";
import { netdScenarios } from "../../netns/netd-scenarios.js";

// The host kernel has no WireGuard module: wireguard-go (TUN), with IPv6 endpoints, the
// family whose headers make the MTU overhead largest.
describe("netd mesh on wireguard-go (host tier)", () => {
  netdScenarios({ tier: "host", implementation: "userspace", endpointFamily: "ipv6" });
});
