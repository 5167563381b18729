import { KEY_ID_CONTEXT_KEY, parseCloakKeySpec } from "../../lib/key-lineage.js";

/**
 * What the key service keeps of each object it watches: only the fields an authorisation
 * decision reads. A Pod in the API is several KB (status, containers, managed fields); its
 * projection here is its identity, its node and the claims it uses — so 20 000 pods cost a few
 * MB, not a hundred.
 */

/** The topology key of cloak's local disk source (csi/node/node-service.ts TOPOLOGY_NODE_KEY). */
export const LOCAL_TOPOLOGY_KEY = "topology.csi.cloak.dev/node";

export interface PvView {
  readonly name: string;
  readonly driver: string;
  /** spec.csi.volumeHandle: the CSI volume id, as the key's lineage lists it. */
  readonly handle: string;
  /** The key id in spec.csi.volumeAttributes, set by cloak's controller at CreateVolume. */
  readonly keyId: string | undefined;
  /** The claim it is bound to, `namespace/name`. */
  readonly claim: string | undefined;
  /** The nodes its node affinity names under the local source's topology key. */
  readonly nodes: readonly string[];
}

export interface PodView {
  readonly uid: string;
  readonly namespace: string;
  readonly name: string;
  readonly node: string;
  /** Succeeded or Failed: its containers run no more. */
  readonly finished: boolean;
  /** The claims its volumes use, `namespace/name` (generic ephemeral volumes included). */
  readonly claims: readonly string[];
}

export interface AttachmentView {
  readonly pv: string;
  readonly node: string;
}

/**
 * A key's volumes: a plain array when few (most keys have one to a handful, and an array of
 * one costs a fraction of a Set), a Set when many (a golden image cloned a thousand times).
 */
export type Members = readonly string[] | ReadonlySet<string>;

export function hasMember(members: Members, id: string): boolean {
  return members instanceof Set ? members.has(id) : (members as readonly string[]).includes(id);
}

export interface KeyView {
  readonly keyId: string;
  readonly driver: string;
  readonly node: string | undefined;
  readonly volumes: Members;
  readonly snapshots: number;
  readonly revoked: boolean;
  readonly revokedAt: string | undefined;
}

type Obj = Record<string, unknown>;

const obj = (value: unknown): Obj => (typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Obj) : {});
const arr = (value: unknown): unknown[] => (Array.isArray(value) ? value : []);
const str = (value: unknown): string | undefined => (typeof value === "string" && value !== "" ? value : undefined);

/** A PV of one of `drivers`, or undefined (every other PV is dropped). */
export function projectPv(object: unknown, drivers: ReadonlySet<string>): PvView | undefined {
  const pv = obj(object);
  const metadata = obj(pv["metadata"]);
  const spec = obj(pv["spec"]);
  const csi = obj(spec["csi"]);
  const driver = str(csi["driver"]);
  const name = str(metadata["name"]);
  const handle = str(csi["volumeHandle"]);
  if (!driver || !drivers.has(driver) || !name || !handle) return undefined;
  const claimRef = obj(spec["claimRef"]);
  const claimNs = str(claimRef["namespace"]);
  const claimName = str(claimRef["name"]);
  const nodes: string[] = [];
  for (const term of arr(obj(obj(spec["nodeAffinity"])["required"])["nodeSelectorTerms"])) {
    for (const expression of arr(obj(term)["matchExpressions"])) {
      const e = obj(expression);
      if (e["key"] !== LOCAL_TOPOLOGY_KEY || e["operator"] !== "In") continue;
      for (const value of arr(e["values"])) if (typeof value === "string") nodes.push(value);
    }
  }
  return {
    name,
    driver,
    handle,
    keyId: str(obj(csi["volumeAttributes"])[KEY_ID_CONTEXT_KEY]),
    claim: claimNs && claimName ? `${claimNs}/${claimName}` : undefined,
    nodes,
  };
}

/** The PV a claim is bound to, or undefined for an unbound claim (not kept). */
export function projectPvc(object: unknown): string | undefined {
  const pvc = obj(object);
  return str(obj(pvc["spec"])["volumeName"]);
}

/**
 * A pod scheduled to a node that uses a claim, or runs as `keepServiceAccount` (the node
 * plugin's pods, whose tokens are checked against them). Every other pod is dropped.
 */
export function projectPod(object: unknown, keepServiceAccount: string): PodView | undefined {
  const pod = obj(object);
  const metadata = obj(pod["metadata"]);
  const spec = obj(pod["spec"]);
  const namespace = str(metadata["namespace"]);
  const name = str(metadata["name"]);
  const uid = str(metadata["uid"]);
  const node = str(spec["nodeName"]);
  if (!namespace || !name || !uid || !node) return undefined;
  const claims: string[] = [];
  for (const volume of arr(spec["volumes"])) {
    const v = obj(volume);
    const claimName = str(obj(v["persistentVolumeClaim"])["claimName"]);
    if (claimName) claims.push(`${namespace}/${claimName}`);
    // A generic ephemeral volume's claim is named <pod>-<volume> (KEP 1698).
    else if (v["ephemeral"] !== undefined && str(v["name"])) claims.push(`${namespace}/${name}-${String(v["name"])}`);
  }
  // Its service account is not kept: a token bound to the pod was issued for the pod's own.
  if (claims.length === 0 && `${namespace}/${str(spec["serviceAccountName"]) ?? "default"}` !== keepServiceAccount) return undefined;
  const phase = str(obj(pod["status"])["phase"]);
  return { uid, namespace, name, node, finished: phase === "Succeeded" || phase === "Failed", claims };
}

/** A VolumeAttachment of one of `drivers` for a PV, or undefined. */
export function projectAttachment(object: unknown, drivers: ReadonlySet<string>): AttachmentView | undefined {
  const va = obj(object);
  const spec = obj(va["spec"]);
  const attacher = str(spec["attacher"]);
  const pv = str(obj(spec["source"])["persistentVolumeName"]);
  const node = str(spec["nodeName"]);
  if (!attacher || !drivers.has(attacher) || !pv || !node) return undefined;
  return { pv, node };
}

export function projectKey(object: unknown): KeyView | undefined {
  const key = obj(object);
  const keyId = str(obj(key["metadata"])["name"]);
  if (!keyId) return undefined;
  const spec = parseCloakKeySpec(key["spec"]);
  return {
    keyId,
    driver: spec.driver,
    node: spec.node,
    volumes: spec.volumes.length > 16 ? new Set(spec.volumes) : spec.volumes,
    snapshots: spec.snapshots.length,
    revoked: spec.revoked,
    revokedAt: spec.revokedAt,
  };
}
