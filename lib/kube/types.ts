/**
 * The parts of Kubernetes objects cloak reads, as the API server sends them (JSON: timestamps
 * are RFC 3339 strings). Only the fields some component uses; everything is optional because
 * nothing the API server sends is trusted to be complete.
 */

export interface ObjectMeta {
  readonly name?: string;
  readonly namespace?: string;
  readonly resourceVersion?: string;
  readonly creationTimestamp?: string;
  readonly labels?: Readonly<Record<string, string>>;
  readonly annotations?: Readonly<Record<string, string>>;
}

export interface KubeObject {
  readonly apiVersion?: string;
  readonly kind?: string;
  readonly metadata?: ObjectMeta;
}

export interface NodeAddress {
  readonly type: string;
  readonly address: string;
}

export interface Node extends KubeObject {
  readonly spec?: {
    readonly podCIDR?: string;
    readonly podCIDRs?: readonly string[];
  };
  readonly status?: {
    readonly addresses?: readonly NodeAddress[];
  };
}

/** The path of a cluster-scoped Node, its name escaped. */
export function nodePath(name: string): string {
  return `/api/v1/nodes/${encodeURIComponent(name)}`;
}
