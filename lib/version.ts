import { readFileSync } from "node:fs";
import { join } from "node:path";
import { packageRoot } from "./paths.js";

/**
 * What cloak is and what it runs on, for `--version`, each daemon's first log line and the
 * `cloak_build_info` metric. Node built-ins only: cmd/cloak.ts imports this before it knows
 * whether the Node running it is new enough for the rest of cloak.
 */

/** The oldest Node major cloak runs on; package.json's `engines.node` says the same (a unit test checks). */
export const MIN_NODE_MAJOR = 24;

/**
 * A one-line refusal when `nodeVersion` (process.versions.node) is older than cloak needs, else
 * undefined. Older Nodes fail deep inside a dependency with messages such as
 * "TEXT_ENCODINGS.union is not a function"; this names the real problem first.
 */
export function unsupportedNode(nodeVersion: string, execPath: string): string | undefined {
  const major = Number(nodeVersion.split(".")[0]);
  if (Number.isInteger(major) && major >= MIN_NODE_MAJOR) return undefined;
  return `cloak needs Node.js ${MIN_NODE_MAJOR} or newer; ${execPath} is Node.js v${nodeVersion}`;
}

let cached: string | undefined;

/** cloak's version: package.json's, read once. */
export function cloakVersion(): string {
  cached ??= (JSON.parse(readFileSync(join(packageRoot(), "package.json"), "utf8")) as { version: string }).version;
  return cached;
}

/** Fields of the line each daemon logs first, so that every log starts with what produced it. */
export function startupFields(): { version: string; node: string; pid: number } {
  return { version: cloakVersion(), node: process.version, pid: process.pid };
}
