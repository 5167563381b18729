import type { RunningPlugin } from "./csi-plugin.js";
import { waitFor } from "./wait.js";

/** The flags that give a test plugin its HTTP endpoint on a port the kernel picks. */
export const HEALTH_ARGS = ["--health-listen", "127.0.0.1:0"] as const;

export interface HttpAnswer {
  readonly status: number;
  readonly body: string;
}

/** The port the plugin's health server bound (its "cloak CSI plugin started" line says). */
export async function healthPort(plugin: RunningPlugin): Promise<number> {
  const line = await waitFor("the plugin's start line", async () => plugin.logs.find((l) => l["msg"] === "cloak CSI plugin started"), 30_000);
  const port = Number(line["healthPort"]);
  if (!Number.isInteger(port) || port <= 0) throw new Error(`the plugin reports no health port: ${JSON.stringify(line)}`);
  return port;
}

export async function httpGet(port: number, path: string): Promise<HttpAnswer> {
  const response = await fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(30_000) });
  return { status: response.status, body: await response.text() };
}

/** One sample of a Prometheus text exposition, by name and (a subset of) its labels. */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const labelText = line.slice(name.length).startsWith("{") ? line.slice(name.length + 1, line.indexOf("}")) : "";
    const have = Object.fromEntries([...labelText.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1], m[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return undefined;
}
