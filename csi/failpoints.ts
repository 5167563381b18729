import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/**
 * Crash injection for the crash-safety tests: with CLOAK_FAILPOINTS=stage:after-format (a
 * comma-separated list), the plugin kills itself with SIGKILL when it reaches that point, so
 * the test can restart it and retry the call exactly as kubelet would after a node crash.
 * `name@scope` fires only for that volume (or name, or copy source: each failpoint says what
 * its scope is), so that one process can carry the failpoints of many tests; with
 * CLOAK_FAILPOINTS_FIRED=<dir>, each fires once (a marker in <dir> remembers it across the
 * restarts), so the restarted plugin runs with the same environment and the retry goes
 * through. Unset in production, where each check is one Set lookup.
 */
const armed = new Set(
  (process.env["CLOAK_FAILPOINTS"] ?? "")
    .split(",")
    .map((name) => name.trim())
    .filter((name) => name !== ""),
);
const firedDir = process.env["CLOAK_FAILPOINTS_FIRED"];

export function failpoint(name: string, scope?: string): void {
  if (armed.size === 0) return;
  const entry = armed.has(name) ? name : scope !== undefined && armed.has(`${name}@${scope}`) ? `${name}@${scope}` : undefined;
  if (entry === undefined) return;
  if (firedDir !== undefined) {
    const marker = join(firedDir, entry.replace(/[^\w.@-]/g, "_"));
    if (existsSync(marker)) return;
    writeFileSync(marker, "");
  }
  process.stderr.write(`cloak: failpoint ${entry} reached; killing the process\n`);
  process.kill(process.pid, "SIGKILL");
}

/** Whether `failpoint(name, scope)` would fire now. */
function wouldFire(name: string, scope?: string): boolean {
  if (armed.size === 0) return false;
  const entry = armed.has(name) ? name : scope !== undefined && armed.has(`${name}@${scope}`) ? `${name}@${scope}` : undefined;
  return entry !== undefined && (firedDir === undefined || !existsSync(join(firedDir, entry.replace(/[^\w.@-]/g, "_"))));
}

/**
 * A failpoint inside one external command (cryptsetup writing a header, then a keyslot): a
 * kill cannot be aimed between two of its writes, so when armed, `leave` first puts the disk
 * in the state such a kill leaves, then the process dies as at any other failpoint.
 */
export async function failpointLeaving(name: string, scope: string, leave: () => Promise<unknown>): Promise<void> {
  if (!wouldFire(name, scope)) return;
  await leave();
  failpoint(name, scope);
}
