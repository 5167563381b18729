import { readFile } from "node:fs/promises";
import { afterEach, inject } from "vitest";
import { createRunner, type CommandResult, type Runner } from "../../lib/exec.js";
import { createLogger } from "../../lib/log.js";

/** What the cluster tests share: the cluster global-setup.ts started, and kubectl against it. */

declare module "vitest" {
  export interface ProvidedContext {
    cluster: ClusterInfo;
  }
}

export interface ClusterInfo {
  readonly dir: string;
  /** system:masters, from this process (through the API server's relay). */
  readonly kubeconfig: string;
  readonly kubectl: string;
  /** The control plane's namespace: where a node's own credentials reach the API server. */
  readonly apiNs: string;
  readonly underlayNs: string;
  readonly nodes: readonly { name: string; ip: string; podCIDR: string; kubeconfig: string }[];
  readonly logs: Readonly<Record<string, string>>;
}

export function cluster(): ClusterInfo {
  return inject("cluster");
}

let runner: Runner | undefined;
/** Runs a command on this machine (through lib/exec), e.g. in one of the testbed's namespaces. */
export const hostRun: Runner = (command, options) => testRunner()(command, options);
function testRunner(): Runner {
  runner ??= createRunner({ logger: createLogger({ component: "cluster-test", level: "warn" }) });
  return runner;
}

/** kubectl as the cluster admin; throws on a non-zero exit unless `okExitCodes` allows it. */
export function kubectl(args: readonly string[], o: { input?: string; okExitCodes?: number[]; timeoutMs?: number } = {}): Promise<CommandResult> {
  const c = cluster();
  return testRunner()({
    file: c.kubectl,
    args: [`--kubeconfig=${c.kubeconfig}`, ...args],
    timeoutMs: o.timeoutMs ?? 120_000,
    ...(o.input === undefined ? {} : { input: o.input }),
    ...(o.okExitCodes ? { okExitCodes: o.okExitCodes } : {}),
  });
}

/** kubectl with a node's kubelet credentials, from inside the testbed (they name 192.0.2.100). */
export function kubectlAsNode(node: string, args: readonly string[], o: { okExitCodes?: number[] } = {}): Promise<CommandResult> {
  const c = cluster();
  const n = c.nodes.find((x) => x.name === node);
  if (!n) throw new Error(`no node ${node} in this cluster`);
  return testRunner()({
    file: "ip",
    args: ["netns", "exec", c.apiNs, c.kubectl, `--kubeconfig=${n.kubeconfig}`, ...args],
    timeoutMs: 120_000,
    ...(o.okExitCodes ? { okExitCodes: o.okExitCodes } : {}),
  });
}

/** Polls `probe` until it returns a value, or fails after `timeoutMs` with the last reason. */
export async function waitFor<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`, { cause: last });
    await new Promise((r) => setTimeout(r, 2_000));
  }
}

export interface PodJson {
  readonly spec: { nodeName?: string };
  readonly status: { phase?: string; podIP?: string };
}

/**
 * Waits until pod `name` (namespace default) is Running with an address, or has Succeeded. A
 * pod that ended otherwise is what the timeout names as its cause, with the pod's log.
 */
export async function waitForPod(name: string, phase: "Running" | "Succeeded", timeoutMs: number): Promise<PodJson> {
  return waitFor(`pod ${name} ${phase}`, timeoutMs, async () => {
    const p = JSON.parse((await kubectl(["get", "pod", name, "-n", "default", "-o", "json"])).stdout) as PodJson;
    const ended = p.status.phase === "Failed" || (phase === "Running" && p.status.phase === "Succeeded");
    if (ended) throw new Error(`pod ${name} ended ${p.status.phase}: ${(await kubectl(["logs", name, "-n", "default"], { okExitCodes: [1] })).stdout}`);
    if (p.status.phase !== phase) return undefined;
    return phase === "Succeeded" || p.status.podIP ? p : undefined;
  });
}

/** In a test file: when a test fails, print the tail of every log of the cluster. */
export function showLogsOnFailure(lines = 60): void {
  afterEach(async (ctx) => {
    if (ctx.task.result?.state !== "fail") return;
    for (const [name, file] of Object.entries(cluster().logs)) {
      const text = await readFile(file, "utf8").catch(() => "");
      console.log(`--- ${name} (${file}), last ${lines} lines:\n${text.split("\n").slice(-lines).join("\n")}`);
    }
  });
}
