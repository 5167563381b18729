import { describe, expect, it } from "vitest";
import { CsiMetrics } from "../csi/metrics.js";
import { KeyServiceMetrics } from "../keyservice/metrics.js";
import { NetdMetrics } from "../netd/metrics.js";
import { cloakVersion } from "./version.js";

describe("cloak_build_info", () => {
  it.each([
    ["csi", () => new CsiMetrics().registry],
    ["keyservice", () => new KeyServiceMetrics().registry],
    ["netd", () => new NetdMetrics().registry],
  ] as const)("is in the %s daemon's registry, with its version and Node", async (component, registry) => {
    const text = await registry().metrics();
    expect(text).toContain(`cloak_build_info{component="${component}",version="${cloakVersion()}",node_version="${process.version}"} 1\n`);
  });
});
