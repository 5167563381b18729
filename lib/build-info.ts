import { Gauge, type Registry } from "prom-client";
import { cloakVersion } from "./version.js";

/**
 * `cloak_build_info{component, version, node_version} 1` in `registry`: the usual *_build_info
 * gauge, so that a dashboard shows which version runs where and a rollout can be followed
 * (`count by (version) (cloak_build_info)`). The same name in every daemon; `component` tells
 * them apart.
 */
export function registerBuildInfo(registry: Registry, component: "csi" | "keyservice" | "netd"): Gauge {
  const gauge = new Gauge({
    name: "cloak_build_info",
    help: "Always 1; the labels say which cloak version and which Node.js this process runs.",
    labelNames: ["component", "version", "node_version"],
    registers: [registry],
  });
  gauge.set({ component, version: cloakVersion(), node_version: process.version }, 1);
  return gauge;
}
