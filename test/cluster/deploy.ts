import { existsSync } from "node:fs";
import { join } from "node:path";
import { createRunner } from "../../lib/exec.js";
import { createLogger } from "../../lib/log.js";
import { packageRoot } from "../../lib/paths.js";
import { cluster, kubectl } from "./kube.js";

/**
 * cloak installed on the cluster the way manifests/README.md tells a cluster admin to: keys made
 * by `cloak keys init`, the namespace and the Secrets by kubectl, then `kubectl apply -k` of the
 * shipped local overlay through test/cluster/overlay (image names and the key service's address
 * only). Idempotent: a second file's call finds it installed and only waits for it.
 */

export const NAMESPACE = "cloak-system";

export async function deployCloak(timeoutMs = 20 * 60_000): Promise<void> {
  const root = packageRoot();
  const keys = join(cluster().dir, "cloak-keys");
  if (!existsSync(join(keys, "master-secret"))) {
    const run = createRunner({ logger: createLogger({ component: "cluster-deploy", level: "warn" }) });
    await run({ file: process.execPath, args: [join(root, "dist/cmd/cloak.js"), "keys", "init", keys], timeoutMs: 60_000 });
  }
  await kubectl(["apply", "-f", join(root, "manifests/base/namespace.yaml")]);
  const secrets: [string, string[]][] = [
    ["cloak-keyservice-keys", [`--from-file=${join(keys, "master-secret")}`, `--from-file=${join(keys, "salt")}`]],
    ["cloak-keyservice-tls", [`--from-file=${join(keys, "server")}/`]],
    ["cloak-csi-node-keyservice-tls", [`--from-file=${join(keys, "clients/csi-node")}/`]],
  ];
  for (const [name, from] of secrets) {
    const yaml = (await kubectl(["-n", NAMESPACE, "create", "secret", "generic", name, ...from, "--dry-run=client", "-o", "yaml"])).stdout;
    await kubectl(["apply", "-f", "-"], { input: yaml });
  }
  // The snapshot CRDs the snapshotter sidecar watches (a cluster with snapshots has them).
  await kubectl(["apply", "--server-side", "-f", join(root, "test/deploy/crds")]);
  await kubectl(["wait", "--for=condition=Established", "--timeout=60s", "crd", "--all"], { timeoutMs: 90_000 });
  await kubectl(["apply", "-k", join(root, "test/cluster/overlay")]);
  const seconds = `${Math.round(timeoutMs / 1000)}s`;
  for (const workload of ["deployment/cloak-keyservice", "daemonset/cloak-csi-node", "daemonset/cloak-netd"]) {
    await kubectl(["-n", NAMESPACE, "rollout", "status", workload, `--timeout=${seconds}`], { timeoutMs: timeoutMs + 30_000 });
  }
}

/** The pod of cloak's DaemonSet `app` (cloak-csi-node, cloak-netd) on `node`. */
export async function daemonPodOn(app: string, node: string): Promise<string> {
  const out = await kubectl([
    "-n", NAMESPACE, "get", "pods", "-l", `app.kubernetes.io/name=${app}`,
    "--field-selector", `spec.nodeName=${node}`, "-o", "jsonpath={.items[0].metadata.name}",
  ]);
  const name = out.stdout.trim();
  if (!name) throw new Error(`no ${app} pod on ${node}`);
  return name;
}
