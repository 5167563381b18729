import { join } from "node:path";
import { packageRoot } from "../../lib/paths.js";
import type { DeployCluster } from "./kube.js";
import { testRunner } from "./kube.js";

/**
 * What the deployment tests that provision volumes share: kube-controller-manager with the
 * volume controllers only (binding, expansion, protection), and where the real sidecars built
 * by test/deploy/sidecars/build.sh are.
 */
export function volumeControllersArgv(cluster: DeployCluster): string[] {
  return [
    cluster.kubeControllerManager,
    `--kubeconfig=${cluster.kubeconfig}`,
    "--controllers=persistentvolume-binder-controller,persistentvolume-expander-controller,persistentvolume-protection-controller,persistentvolumeclaim-protection-controller",
    "--leader-elect=false",
    "--secure-port=0",
    "--pvclaimbinder-sync-period=2s",
    "--v=2",
  ];
}

/** kube-controller-manager's line once its volume controllers run. */
export const volumeControllersReady = (out: string): boolean =>
  /Started controller|Starting persistent volume controller|"Starting controller" controller="persistentvolume-binder"/i.test(out);

/** CSI_PROVISIONER=..., CSI_RESIZER=..., CSI_SNAPSHOTTER=..., CSI_ATTACHER=...: the cached sidecar binaries. */
export async function sidecarPaths(): Promise<Record<string, string>> {
  const out = await testRunner()({ file: join(packageRoot(), "test/deploy/sidecars/build.sh"), args: ["--print-paths"] });
  return Object.fromEntries(out.stdout.trim().split("\n").map((l) => l.split("=") as [string, string]));
}
