/**
 * A key's lineage, as cloak records it in the Kubernetes API: one cluster-scoped `CloakKey`
 * object per key id (its name), listing every volume and snapshot whose disk carries that key
 * (a volume, its clones and restores, their snapshots — all copies of one LUKS header). The
 * controller writes it (csi/keys/lineage.ts); the key service reads it (keyservice/authz/).
 *
 * When the last member is removed the same update sets `revoked`, and the CRD's validation
 * rules (manifests/base/cloak-key-crd.yaml) make that final: a revoked key never gets members
 * again and never becomes unrevoked, so the key service refuses it forever.
 */
export const LINEAGE_GROUP = "cloak.dev";
export const LINEAGE_VERSION = "v1alpha1";
export const LINEAGE_KIND = "CloakKey";
export const LINEAGE_PLURAL = "cloakkeys";
export const LINEAGE_PATH = `/apis/${LINEAGE_GROUP}/${LINEAGE_VERSION}/${LINEAGE_PLURAL}`;

/**
 * The volume_context key under which the controller hands the key id to the node (and which
 * becomes the PV's immutable `spec.csi.volumeAttributes`). The node formats with it as the LUKS
 * UUID; the key service checks that the PV asking for a key carries it.
 */
export const KEY_ID_CONTEXT_KEY = "cloak.dev/key-id";

export type LineageMemberKind = "volume" | "snapshot";

export interface LineageMember {
  readonly kind: LineageMemberKind;
  /** The CSI volume or snapshot id (the PV's volumeHandle, the snapshot handle). */
  readonly id: string;
}

export interface CloakKeySpec {
  /** The CSI driver whose volumes these are: a PV of another driver never matches. */
  readonly driver: string;
  /** For node-local disk sources: the node whose disks hold every member. */
  readonly node?: string;
  readonly volumes: readonly string[];
  readonly snapshots: readonly string[];
  readonly revoked: boolean;
  /** When the last member went (RFC 3339). */
  readonly revokedAt?: string;
}

export interface CloakKeyObject {
  readonly apiVersion: string;
  readonly kind: string;
  readonly metadata: { readonly name: string; readonly resourceVersion?: string; readonly labels?: Record<string, string> };
  readonly spec: CloakKeySpec;
}

/** The spec of a CloakKey as the API returns it; absent lists are empty lists. */
export function parseCloakKeySpec(value: unknown): CloakKeySpec {
  const spec = (typeof value === "object" && value !== null ? value : {}) as Record<string, unknown>;
  const strings = (v: unknown): string[] => (Array.isArray(v) ? v.filter((s): s is string => typeof s === "string") : []);
  return {
    driver: typeof spec["driver"] === "string" ? spec["driver"] : "",
    ...(typeof spec["node"] === "string" && spec["node"] !== "" ? { node: spec["node"] } : {}),
    volumes: strings(spec["volumes"]),
    snapshots: strings(spec["snapshots"]),
    revoked: spec["revoked"] === true,
    ...(typeof spec["revokedAt"] === "string" ? { revokedAt: spec["revokedAt"] } : {}),
  };
}

/**
 * Key ids cloak chooses are lowercase UUIDs, which are also valid object names. Anything else
 * cannot name a CloakKey and so can never be authorised.
 */
export function isLineageName(keyId: string): boolean {
  return /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(keyId);
}
