import { describe } from "vitest";
import { netdScenarios } from "../../netns/netd-scenarios.js";

// The same scenarios as the host tier, on kernel WireGuard, with IPv4 endpoints (the host tier
// covers IPv6 ones). Everything runs inside the guest: API server, etcd, testbed and netd:
// one code path for the VM and for native mode (a kernel with WireGuard needs no VM), and no
// host-side namespaces or tap devices to set up before the one boot that runs all VM tests.
// The price is time: Node and kube-apiserver start slowly on the emulated CPU.
describe("netd mesh on kernel WireGuard (VM tier)", () => {
  netdScenarios({ tier: "vm", implementation: "kernel", endpointFamily: "ipv4" });
});
