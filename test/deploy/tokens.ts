import type { CoreV1Api, V1Pod } from "@kubernetes/client-node";
import { writeFile } from "node:fs/promises";
import { stringify } from "yaml";

/**
 * Service-account tokens as kubelet mounts them: from the TokenRequest API, bound to a Pod (so
 * that they name its node), and kubeconfigs that carry them.
 */

/**
 * A token for `serviceAccount` in `namespace`, bound to `pod` when given, else unbound; for the
 * API server's audience unless `audiences` names others (a projected token for the key service).
 */
export async function serviceAccountToken(
  core: CoreV1Api,
  o: { namespace: string; serviceAccount: string; pod?: V1Pod; audiences?: string[]; expirationSeconds?: number },
): Promise<string> {
  const pod = o.pod;
  const res = await core.createNamespacedServiceAccountToken({
    namespace: o.namespace,
    name: o.serviceAccount,
    body: {
      spec: {
        audiences: o.audiences ?? [],
        expirationSeconds: o.expirationSeconds ?? 3600,
        ...(pod ? { boundObjectRef: { apiVersion: "v1", kind: "Pod", name: pod.metadata?.name ?? "", uid: pod.metadata?.uid ?? "" } } : {}),
      },
    },
  });
  const token = res.status?.token;
  if (!token) throw new Error(`no token for ${o.namespace}/${o.serviceAccount}`);
  return token;
}

/** A kubeconfig file (mode 0600) that authenticates with `token`. */
export async function writeTokenKubeconfig(file: string, o: { server: string; caFile: string; token: string }): Promise<string> {
  const doc = {
    apiVersion: "v1",
    kind: "Config",
    clusters: [{ name: "cluster", cluster: { server: o.server, "certificate-authority": o.caFile } }],
    users: [{ name: "token", user: { token: o.token } }],
    contexts: [{ name: "cluster", context: { cluster: "cluster", user: "token" } }],
    "current-context": "cluster",
  };
  await writeFile(file, stringify(doc), { mode: 0o600 });
  return file;
}
