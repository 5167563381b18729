/**
 * Crash injection for the crash-safety tests: with CLOAK_FAILPOINTS=stage:after-format (a
 * comma-separated list), the plugin kills itself with SIGKILL when it reaches that point, so
 * the test can restart it and retry the call exactly as kubelet would after a node crash.
 * Unset in production, where each check is one Set lookup.
 */
const armed = new Set(
  (process.env["CLOAK_FAILPOINTS"] ?? "")
    .split(",")
    .map((name) => name.trim())
    .filter((name) => name !== ""),
);

export function failpoint(name: string): void {
  if (!armed.has(name)) return;
  process.stderr.write(`cloak: failpoint ${name} reached; killing the process\n`);
  process.kill(process.pid, "SIGKILL");
}
