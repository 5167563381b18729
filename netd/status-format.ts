import type { AgentStatus } from "./agent.js";
import { HANDSHAKE_FRESH_SECONDS } from "./metrics.js";

/** The peer table `cloak netd status` prints. */
export function formatStatus(s: AgentStatus, nowSeconds: number): string {
  const lines = [
    `node ${s.node}  interface ${s.iface} (${s.implementation ?? "unknown"})  port ${s.listenPort}`,
    `public key ${s.publicKey ?? "-"}`,
    `api ${s.synced ? "synced" : "not synced"}  last reconcile ${s.lastReconcile ?? "never"}${s.lastError ? `  ERROR ${s.lastError}` : ""}`,
    "",
  ];
  const rows = s.peers.map((p) => {
    const age = p.latestHandshake > 0 ? nowSeconds - p.latestHandshake : undefined;
    return [
      p.node ?? "?",
      p.endpoint ?? "-",
      age === undefined ? "never" : `${age}s ago`,
      age !== undefined && age < HANDSHAKE_FRESH_SECONDS ? "up" : "down",
      String(p.txBytes),
      String(p.rxBytes),
      p.allowedIPs.join(","),
    ];
  });
  const header = ["NODE", "ENDPOINT", "HANDSHAKE", "STATE", "SENT", "RECEIVED", "ALLOWED IPS"];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const fmt = (r: string[]) => r.map((c, i) => c.padEnd(widths[i] ?? 0)).join("  ").trimEnd();
  lines.push(fmt(header), ...rows.map(fmt));
  if (rows.length === 0) lines.push("(no peers)");
  for (const k of s.skipped) lines.push(`skipped ${k.node}: ${k.reason}`);
  for (const k of s.conflicts) lines.push(`conflict ${k.node}: ${k.reason}`);
  return `${lines.join("\n")}\n`;
}
