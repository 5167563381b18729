import { createPrivateKey, generateKeyPairSync, sign, type KeyObject } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { parseAllDocuments } from "yaml";
import { isKubeStatus, KubeClient } from "../../lib/kube/client.js";
import { KEY_ID_CONTEXT_KEY, LINEAGE_PATH } from "../../lib/key-lineage.js";
import { packageRoot } from "../../lib/paths.js";
import type { ApiServer } from "../apiserver/apiserver.js";
import { waitFor } from "../support/wait.js";

/**
 * A cluster for the key service's authorisation, on a real API server (test/apiserver): the
 * CloakKey CRD and the key service's RBAC from manifests/base, its kubeconfig, and makers for
 * what a cluster holds — Nodes, node plugin pods and their projected tokens (TokenRequest, bound
 * to the pod), PVs of cloak's driver with their claims and the pods that use them. No kubelet:
 * pods are created with spec.nodeName, as the scheduler would bind them.
 */

export const NS = "cloak-system";
export const NODE_SA = "cloak-csi-node";
export const DRIVER = "csi.cloak.dev";
export const AUDIENCE = "cloak-keyservice";

export interface AuthzCluster {
  /** system:masters, through the small client. */
  readonly api: KubeClient;
  /** A kubeconfig of the key service's service account, with the manifests' ClusterRole. */
  readonly keyserviceKubeconfig: string;
  create(path: string, body: Record<string, unknown>): Promise<Record<string, unknown>>;
  remove(path: string): Promise<void>;
  node(name: string): Promise<void>;
  /** A pod on `node`, running as `serviceAccount` (the node plugin's by default). */
  pod(o: { namespace: string; name: string; node: string; serviceAccount?: string; claims?: readonly string[] }): Promise<{ uid: string }>;
  /** A TokenRequest token of the pod's service account, bound to the pod. */
  podToken(o: { namespace: string; name: string; serviceAccount?: string; audience?: string; expirationSeconds?: number }): Promise<string>;
  /** A PV of cloak's driver carrying `keyId`, bound both ways to claim `namespace/claim`. */
  boundVolume(o: { pv: string; handle: string; keyId: string; namespace: string; claim: string; node?: string }): Promise<void>;
  /** The API server's service-account signing key (to mint tokens the real validator judges). */
  signingKey(): Promise<KeyObject>;
  close(): void;
}

export async function prepareAuthzCluster(api: ApiServer, dir: string): Promise<AuthzCluster> {
  const kube = await KubeClient.connect(api.kubeconfigPath, "cloak-test");
  const create = async (path: string, body: Record<string, unknown>): Promise<Record<string, unknown>> => {
    for (let attempt = 0; ; attempt++) {
      try {
        return (await kube.json<Record<string, unknown> | undefined>("POST", path, { body })) ?? {};
      } catch (err) {
        // Right after a CRD or a namespace appears, the API server may not serve it yet.
        if (attempt < 50 && (isKubeStatus(err, 404) || isKubeStatus(err, 429) || isKubeStatus(err, 503))) {
          await new Promise((r) => setTimeout(r, 100));
          continue;
        }
        if (isKubeStatus(err, 409)) return {};
        throw err;
      }
    }
  };
  const remove = async (path: string): Promise<void> => {
    try {
      await kube.json("DELETE", path, { query: { gracePeriodSeconds: 0 } });
    } catch (err) {
      if (!isKubeStatus(err, 404)) throw err;
    }
  };

  const manifest = async (file: string) =>
    parseAllDocuments(await readFile(join(packageRoot(), "manifests/base", file), "utf8")).map((d) => d.toJSON() as Record<string, unknown> & { kind: string });
  const [crd] = await manifest("cloak-key-crd.yaml");
  await create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd ?? {});
  await waitFor("the CloakKey CRD established", async () => {
    const got = await kube.json<{ status?: { conditions?: { type: string; status: string }[] } }>("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/cloakkeys.cloak.dev");
    return got.status?.conditions?.some((c) => c.type === "Established" && c.status === "True");
  }, 30_000);
  await waitFor("CloakKeys served", () => kube.json("GET", LINEAGE_PATH).then(() => true), 30_000);
  await create("/api/v1/namespaces", { metadata: { name: NS } });
  for (const sa of [NODE_SA, "cloak-keyservice"]) await create(`/api/v1/namespaces/${NS}/serviceaccounts`, { metadata: { name: sa } });
  for (const o of await manifest("keyservice.yaml")) {
    if (o.kind === "ClusterRole") await create("/apis/rbac.authorization.k8s.io/v1/clusterroles", o);
    if (o.kind === "ClusterRoleBinding") await create("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", o);
  }
  const keyserviceKubeconfig = await api.serviceAccountKubeconfig({ namespace: NS, name: "cloak-keyservice" });

  return {
    api: kube,
    keyserviceKubeconfig,
    create,
    remove,
    async node(name) {
      await create("/api/v1/nodes", { metadata: { name, labels: { "kubernetes.io/hostname": name } } });
    },
    async pod({ namespace, name, node, serviceAccount, claims }) {
      const created = await create(`/api/v1/namespaces/${namespace}/pods`, {
        metadata: { name },
        spec: {
          nodeName: node,
          serviceAccountName: serviceAccount ?? NODE_SA,
          automountServiceAccountToken: false,
          containers: [{ name: "c", image: "cloak.invalid/none:0" }],
          volumes: (claims ?? []).map((claim, i) => ({ name: `v${i}`, persistentVolumeClaim: { claimName: claim } })),
        },
      });
      return { uid: String((created["metadata"] as { uid?: string } | undefined)?.uid ?? "") };
    },
    async podToken({ namespace, name, serviceAccount, audience, expirationSeconds }) {
      const pod = await kube.json<{ metadata: { uid: string } }>("GET", `/api/v1/namespaces/${namespace}/pods/${name}`);
      const res = await kube.json<{ status?: { token?: string } }>("POST", `/api/v1/namespaces/${namespace}/serviceaccounts/${serviceAccount ?? NODE_SA}/token`, {
        body: {
          apiVersion: "authentication.k8s.io/v1",
          kind: "TokenRequest",
          spec: { audiences: [audience ?? AUDIENCE], expirationSeconds: expirationSeconds ?? 600, boundObjectRef: { apiVersion: "v1", kind: "Pod", name, uid: pod.metadata.uid } },
        },
      });
      const token = res.status?.token;
      if (!token) throw new Error(`no token for pod ${namespace}/${name}`);
      return token;
    },
    async boundVolume({ pv, handle, keyId, namespace, claim, node }) {
      await create("/api/v1/persistentvolumes", {
        metadata: { name: pv },
        spec: {
          capacity: { storage: "1Gi" },
          accessModes: ["ReadWriteOnce"],
          persistentVolumeReclaimPolicy: "Delete",
          storageClassName: "cloak-encrypted",
          claimRef: { namespace, name: claim },
          csi: { driver: DRIVER, volumeHandle: handle, fsType: "ext4", volumeAttributes: { fsType: "ext4", integrity: "false", [KEY_ID_CONTEXT_KEY]: keyId } },
          ...(node
            ? { nodeAffinity: { required: { nodeSelectorTerms: [{ matchExpressions: [{ key: "topology.csi.cloak.dev/node", operator: "In", values: [node] }] }] } } }
            : {}),
        },
      });
      await create(`/api/v1/namespaces/${namespace}/persistentvolumeclaims`, {
        metadata: { name: claim },
        spec: { accessModes: ["ReadWriteOnce"], storageClassName: "cloak-encrypted", volumeName: pv, resources: { requests: { storage: "1Gi" } } },
      });
    },
    async signingKey() {
      return createPrivateKey(await readFile(join(dir, "pki", "sa.key")));
    },
    close: () => kube.close(),
  };
}

/**
 * A token with `claims` changed, signed with `key` (ES256, the test API server's algorithm):
 * the API server's signing key gives a token only the claims make bad (expired); another key
 * gives a token of another issuer.
 */
export function reSign(token: string, key: KeyObject, change: (claims: Record<string, unknown>) => Record<string, unknown>): string {
  const [header = "", payload = ""] = token.split(".");
  const claims = change(JSON.parse(Buffer.from(payload, "base64url").toString("utf8")) as Record<string, unknown>);
  const body = `${header}.${Buffer.from(JSON.stringify(claims)).toString("base64url")}`;
  const signature = sign("sha256", Buffer.from(body), { key, dsaEncoding: "ieee-p1363" });
  return `${body}.${signature.toString("base64url")}`;
}

export function otherIssuerKey(): KeyObject {
  return generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey;
}
