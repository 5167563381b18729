import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { packageRoot } from "./paths.js";
import { cloakVersion, MIN_NODE_MAJOR, unsupportedNode } from "./version.js";

describe("the Node version check", () => {
  it("asks for the Node package.json's engines field asks for", () => {
    const pkg = JSON.parse(readFileSync(join(packageRoot(), "package.json"), "utf8")) as { engines: { node: string } };
    expect(pkg.engines.node).toBe(`>=${MIN_NODE_MAJOR}`);
  });

  it.each(["24.0.0", "24.21.0", "25.1.0", "30.0.0-pre"])("accepts Node %s", (version) => {
    expect(unsupportedNode(version, "/usr/bin/node")).toBeUndefined();
  });

  it.each(["23.11.0", "20.20.2", "18.20.4", "garbage"])("refuses Node %s in one line naming the binary", (version) => {
    expect(unsupportedNode(version, "/usr/bin/node")).toBe(`cloak needs Node.js ${MIN_NODE_MAJOR} or newer; /usr/bin/node is Node.js v${version}`);
  });
});

it("reads cloak's version from package.json", () => {
  const pkg = JSON.parse(readFileSync(join(packageRoot(), "package.json"), "utf8")) as { version: string };
  expect(cloakVersion()).toBe(pkg.version);
});
