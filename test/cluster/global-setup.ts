import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestProject } from "vitest/node";
import { startCluster } from "./cluster.js";
import type { ClusterInfo } from "./kube.js";

/** One cluster for every file of the tier; its logs are printed when the start fails. */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const dir = await mkdtemp(join(tmpdir(), "cloak-cluster-"));
  const keep = Boolean(process.env["CLOAK_KEEP_TEST_DIR"]);
  const removeDir = () => (keep ? Promise.resolve() : rm(dir, { recursive: true, force: true }));
  // Two nodes (pod traffic between them); one vCPU each, as the machine has two cores.
  const nodes = Number(process.env["CLOAK_CLUSTER_NODES"] ?? "2");
  const started = Date.now();
  let cluster;
  try {
    cluster = await startCluster({ dir, nodes, cpus: nodes === 1 ? 2 : 1 });
  } catch (err) {
    await removeDir();
    throw err;
  }
  const info: ClusterInfo = {
    dir,
    kubeconfig: cluster.api.kubeconfigPath,
    kubectl: cluster.kubectl,
    apiNs: cluster.testbed.apiNs ?? "",
    underlayNs: cluster.testbed.underlayNs,
    nodes: cluster.nodes.map((n) => ({ name: n.name, ip: n.ip, podCIDR: n.podCIDR, kubeconfig: n.kubeconfig })),
    logs: cluster.logs,
  };
  project.provide("cluster", info);
  // Interrupted (Ctrl-C, a CI timeout): vitest would not run the teardown below, and the guests
  // would live on until the next run removes them; stop them now.
  const onSignal = (signal: NodeJS.Signals) => {
    void cluster
      .stop()
      .then(removeDir)
      .finally(() => process.kill(process.pid, signal));
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  console.log(`cluster tests: ${nodes} node(s) Ready in ${Math.round((Date.now() - started) / 1000)} s (${dir})`);
  return async () => {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    await cluster.stop();
    await removeDir();
  };
}
