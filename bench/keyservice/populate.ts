import { randomUUID } from "node:crypto";
import { KEY_ID_CONTEXT_KEY, LINEAGE_GROUP, LINEAGE_KIND, LINEAGE_PATH, LINEAGE_VERSION } from "../../lib/key-lineage.js";
import { DRIVER, NS, NODE_SA, type AuthzCluster } from "../../test/keyservice-harness/cluster.js";

/**
 * A cluster of the size the authorisation benchmark measures at, in a real API server: `nodes`
 * Nodes, each with a node plugin pod; `volumes` PVs of cloak's driver, each with its claim and
 * its CloakKey record; `pods` application pods on the volumes' nodes using those claims (two
 * pods a claim at 20 000 pods and 10 000 volumes, as a Deployment's rollout leaves them).
 * Returns, for the first `tokenNodes` nodes, their plugin's token and the key ids of their
 * volumes: the requests the load generator sends, each of which the service must allow.
 */
export interface PopulateOptions {
  readonly nodes: number;
  readonly volumes: number;
  readonly pods: number;
  readonly tokenNodes: number;
  readonly concurrency?: number;
  readonly progress?: (text: string) => void;
}

export interface Populated {
  readonly pairs: { keyId: string; token: string }[];
  readonly seconds: number;
  readonly objects: number;
}

const APPS = "bench-apps";

export async function populate(cluster: AuthzCluster, o: PopulateOptions): Promise<Populated> {
  const started = performance.now();
  let objects = 0;
  const run = async (what: string, count: number, make: (i: number) => Promise<unknown>): Promise<void> => {
    let next = 0;
    const t0 = performance.now();
    const worker = async (): Promise<void> => {
      while (next < count) {
        const i = next++;
        await make(i);
        objects++;
      }
    };
    await Promise.all(Array.from({ length: o.concurrency ?? 24 }, worker));
    o.progress?.(`${what}: ${count} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  };
  const node = (i: number) => `bench-n-${i}`;
  const keyIds = Array.from({ length: o.volumes }, () => randomUUID());

  await cluster.create("/api/v1/namespaces", { metadata: { name: APPS } });
  await cluster.create(`/api/v1/namespaces/${APPS}/serviceaccounts`, { metadata: { name: "default" } });
  await run("nodes", o.nodes, (i) => cluster.node(node(i)));
  await run("node plugin pods", o.nodes, (i) => cluster.pod({ namespace: NS, name: `csi-${i}`, node: node(i) }));
  await run("CloakKeys", o.volumes, (j) =>
    cluster.create(LINEAGE_PATH, {
      apiVersion: `${LINEAGE_GROUP}/${LINEAGE_VERSION}`,
      kind: LINEAGE_KIND,
      metadata: { name: keyIds[j] },
      spec: { driver: DRIVER, volumes: [`vol-${j}`] },
    }),
  );
  await run("PVs", o.volumes, (j) =>
    cluster.create("/api/v1/persistentvolumes", {
      metadata: { name: `pv-${j}` },
      spec: {
        capacity: { storage: "1Gi" },
        accessModes: ["ReadWriteOnce"],
        storageClassName: "cloak-encrypted",
        claimRef: { namespace: APPS, name: `claim-${j}` },
        csi: { driver: DRIVER, volumeHandle: `vol-${j}`, fsType: "ext4", volumeAttributes: { fsType: "ext4", integrity: "false", [KEY_ID_CONTEXT_KEY]: keyIds[j] } },
      },
    }),
  );
  await run("PVCs", o.volumes, (j) =>
    cluster.create(`/api/v1/namespaces/${APPS}/persistentvolumeclaims`, {
      metadata: { name: `claim-${j}` },
      spec: { accessModes: ["ReadWriteOnce"], storageClassName: "cloak-encrypted", volumeName: `pv-${j}`, resources: { requests: { storage: "1Gi" } } },
    }),
  );
  await run("application pods", o.pods, (k) => {
    const j = k % o.volumes;
    return cluster.pod({ namespace: APPS, name: `app-${k}`, node: node(j % o.nodes), serviceAccount: "default", claims: [`claim-${j}`] });
  });

  const pairs: { keyId: string; token: string }[] = [];
  for (let i = 0; i < Math.min(o.tokenNodes, o.nodes); i++) {
    const token = await cluster.podToken({ namespace: NS, name: `csi-${i}`, serviceAccount: NODE_SA, expirationSeconds: 3600 });
    for (let j = i; j < o.volumes; j += o.nodes) pairs.push({ keyId: keyIds[j] ?? "", token });
  }
  // Interleave the nodes, as many nodes staging at once would.
  pairs.sort((a, b) => a.keyId.localeCompare(b.keyId));
  return { pairs, seconds: (performance.now() - started) / 1000, objects };
}
