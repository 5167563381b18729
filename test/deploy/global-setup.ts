import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestProject } from "vitest/node";
import { createRunner } from "../../lib/exec.js";
import { createLogger } from "../../lib/log.js";
import { packageRoot } from "../../lib/paths.js";
import { ensureBinaries, startApiServer, type ApiServer } from "../apiserver/apiserver.js";
import type { DeployCluster } from "./kube.js";

/**
 * One real kube-apiserver (and etcd) for every deployment test file, with the CRDs the
 * manifests need that a bare API server lacks (snapshots, cert-manager) installed first.
 * Loopback only: nothing here touches the network.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const runner = createRunner({ logger: createLogger({ component: "deploy-setup", level: "warn" }) });
  const binaries = await ensureBinaries(runner, { kubectl: true });
  const paths = await printPaths(runner);
  const kcm = paths["KUBE_CONTROLLER_MANAGER"];
  if (!kcm) throw new Error("test/apiserver/build.sh does not know kube-controller-manager: run `make deploy-deps`");
  const dir = await mkdtemp(join(tmpdir(), "cloak-deploy-"));
  const removeDir = () => (process.env["CLOAK_KEEP_TEST_DIR"] ? Promise.resolve() : rm(dir, { recursive: true, force: true }));
  const started = Date.now();
  let api: ApiServer;
  try {
    api = await startApiServer({ dir: join(dir, "api") });
  } catch (err) {
    await removeDir();
    throw err;
  }
  try {
    await runner({
      file: binaries.kubectl,
      args: [`--kubeconfig=${api.kubeconfigPath}`, "apply", "--server-side", "-f", join(packageRoot(), "test/deploy/crds")],
      timeoutMs: 60_000,
    });
    await runner({
      file: binaries.kubectl,
      args: [`--kubeconfig=${api.kubeconfigPath}`, "wait", "--for=condition=Established", "--timeout=60s", "crd", "--all"],
      timeoutMs: 90_000,
    });
  } catch (err) {
    await api.stop();
    await removeDir();
    throw err;
  }
  const cluster: DeployCluster = {
    dir,
    kubeconfig: api.kubeconfigPath,
    url: api.hostUrl,
    caFile: api.caFile,
    kubectl: binaries.kubectl,
    kubeControllerManager: kcm,
  };
  project.provide("deployCluster", cluster);
  console.log(`deploy tests: API server ready in ${Date.now() - started} ms (${api.hostUrl}, ${dir})`);
  return async () => {
    await api.stop();
    await removeDir();
  };
}

async function printPaths(runner: ReturnType<typeof createRunner>): Promise<Record<string, string>> {
  const out = await runner({ file: join(packageRoot(), "test/apiserver/build.sh"), args: ["--print-paths"] });
  return Object.fromEntries(out.stdout.trim().split("\n").map((l) => l.split("=") as [string, string]));
}
