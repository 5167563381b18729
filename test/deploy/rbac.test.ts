import { beforeAll, describe, expect, it } from "vitest";
import { AuthorizationV1Api, type V1ClusterRole, type V1PolicyRule, type V1ResourceAttributes } from "@kubernetes/client-node";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { packageRoot } from "../../lib/paths.js";
import { NAMESPACE, adminClient, kubectl, manifestsDir, parseYamlObjects, render, type KubeObject } from "./kube.js";

// Least privilege, asked of the real RBAC authorizer: each service account can do what its
// pods need and nothing on the forbidden list. The sidecars' rules are also compared with the
// RBAC files their projects publish for the pinned versions (read from the Go module cache the
// sidecar build fills), so that a version bump that needs a new permission is noticed.

type Check = readonly [verb: string, resource: string, options?: { group?: string; namespace?: string; subresource?: string; name?: string }];

interface Account {
  readonly name: string;
  readonly allowed: readonly Check[];
  readonly forbidden: readonly Check[];
}

const APP_NS = "cloak-deploy-apps";

const ACCOUNTS: readonly Account[] = [
  {
    name: "cloak-csi-node",
    allowed: [
      // external-provisioner: PVs for claims on this node, and the claims' annotations.
      ["create", "persistentvolumes"],
      ["delete", "persistentvolumes"],
      ["watch", "persistentvolumeclaims", { namespace: APP_NS }],
      ["update", "persistentvolumeclaims", { namespace: APP_NS }],
      ["get", "storageclasses", { group: "storage.k8s.io" }],
      ["get", "csinodes", { group: "storage.k8s.io" }],
      ["list", "nodes"],
      ["create", "events", { namespace: APP_NS }],
      ["get", "volumesnapshotcontents", { group: "snapshot.storage.k8s.io" }],
      // Capacity objects in its own namespace, owned by its pod.
      ["create", "csistoragecapacities", { group: "storage.k8s.io", namespace: NAMESPACE }],
      ["get", "pods", { namespace: NAMESPACE }],
      // external-resizer
      ["patch", "persistentvolumes"],
      ["patch", "persistentvolumeclaims", { namespace: APP_NS, subresource: "status" }],
      ["watch", "pods", { namespace: APP_NS }],
      // external-snapshotter
      ["update", "volumesnapshotcontents", { group: "snapshot.storage.k8s.io", subresource: "status" }],
      ["list", "volumesnapshotclasses", { group: "snapshot.storage.k8s.io" }],
      // the controller's key records (an admission policy limits them to its own node's keys)
      ["create", "cloakkeys", { group: "cloak.dev" }],
      ["update", "cloakkeys", { group: "cloak.dev" }],
    ],
    forbidden: [
      ["get", "secrets", { namespace: NAMESPACE }],
      ["list", "secrets"],
      ["create", "pods", { namespace: APP_NS }],
      ["delete", "persistentvolumeclaims", { namespace: APP_NS }],
      ["create", "persistentvolumeclaims", { namespace: APP_NS }],
      ["patch", "nodes"],
      ["update", "csinodes", { group: "storage.k8s.io" }],
      ["create", "csistoragecapacities", { group: "storage.k8s.io", namespace: "default" }],
      ["delete", "pods", { namespace: NAMESPACE }],
      ["create", "leases", { group: "coordination.k8s.io", namespace: NAMESPACE }],
      ["create", "volumesnapshots", { group: "snapshot.storage.k8s.io", namespace: APP_NS }],
      ["list", "volumegroupsnapshotcontents", { group: "groupsnapshot.storage.k8s.io" }],
      ["update", "persistentvolumes"],
      ["bind", "clusterroles", { group: "rbac.authorization.k8s.io" }],
      ["impersonate", "serviceaccounts", { namespace: NAMESPACE }],
      ["create", "serviceaccounts", { namespace: NAMESPACE, subresource: "token", name: "cloak-keyservice" }],
      ["delete", "cloakkeys", { group: "cloak.dev" }],
      ["create", "tokenreviews", { group: "authentication.k8s.io" }],
    ],
  },
  {
    name: "cloak-netd",
    allowed: [
      ["get", "nodes"],
      ["list", "nodes"],
      ["watch", "nodes"],
      ["patch", "nodes"],
    ],
    forbidden: [
      ["get", "secrets", { namespace: NAMESPACE }],
      ["list", "secrets"],
      ["update", "nodes"],
      ["delete", "nodes"],
      ["create", "nodes"],
      ["patch", "nodes", { subresource: "status" }],
      ["list", "pods"],
      ["get", "configmaps", { namespace: NAMESPACE }],
      ["create", "events", { namespace: NAMESPACE }],
      ["list", "persistentvolumes"],
    ],
  },
  {
    name: "cloak-keyservice",
    allowed: [
      // What "which node holds which volume" is made of, and verifying the node plugin's tokens.
      ["list", "persistentvolumes"],
      ["watch", "persistentvolumes"],
      ["list", "persistentvolumeclaims"],
      ["watch", "persistentvolumeclaims", { namespace: APP_NS }],
      ["list", "pods"],
      ["watch", "pods", { namespace: NAMESPACE }],
      ["list", "volumeattachments", { group: "storage.k8s.io" }],
      ["watch", "cloakkeys", { group: "cloak.dev" }],
      ["create", "tokenreviews", { group: "authentication.k8s.io" }],
    ],
    forbidden: [
      // It reads its Secrets from volumes; through the API it may not, not even its own.
      ["get", "secrets", { namespace: NAMESPACE, name: "cloak-keyservice-keys" }],
      ["list", "secrets", { namespace: NAMESPACE }],
      ["get", "nodes"],
      // Read-only: it can neither make a volume nor record, change or revoke a key.
      ["create", "persistentvolumes"],
      ["update", "cloakkeys", { group: "cloak.dev" }],
      ["create", "cloakkeys", { group: "cloak.dev" }],
      ["delete", "pods", { namespace: NAMESPACE }],
      ["create", "serviceaccounts", { namespace: NAMESPACE, subresource: "token", name: "cloak-csi-node" }],
      ["create", "subjectaccessreviews", { group: "authorization.k8s.io" }],
    ],
  },
];

async function allowed(account: string, [verb, resource, o]: Check): Promise<boolean> {
  const attributes: V1ResourceAttributes = {
    verb,
    resource,
    group: o?.group ?? "",
    ...(o?.namespace ? { namespace: o.namespace } : {}),
    ...(o?.subresource ? { subresource: o.subresource } : {}),
    ...(o?.name ? { name: o.name } : {}),
  };
  const review = await adminClient().makeApiClient(AuthorizationV1Api).createSubjectAccessReview({
    body: {
      spec: {
        user: `system:serviceaccount:${NAMESPACE}:${account}`,
        groups: ["system:serviceaccounts", `system:serviceaccounts:${NAMESPACE}`, "system:authenticated"],
        resourceAttributes: attributes,
      },
    },
  });
  return review.status?.allowed === true;
}

const describeCheck = ([verb, resource, o]: Check) =>
  `${verb} ${[o?.group, resource].filter(Boolean).join("/")}${o?.subresource ? `/${o.subresource}` : ""}${o?.namespace ? ` in ${o.namespace}` : ""}`;

beforeAll(async () => {
  await kubectl(["apply", "-k", join(manifestsDir(), "overlays/local")]);
});

describe("RBAC of each service account (SubjectAccessReview on the real authorizer)", () => {
  for (const account of ACCOUNTS) {
    it(`${account.name}: everything it needs`, async () => {
      const denied: string[] = [];
      for (const check of account.allowed) if (!(await allowed(account.name, check))) denied.push(describeCheck(check));
      expect(denied).toEqual([]);
    });
    it(`${account.name}: nothing on the forbidden list`, async () => {
      const granted: string[] = [];
      for (const check of account.forbidden) if (await allowed(account.name, check)) granted.push(describeCheck(check));
      expect(granted).toEqual([]);
    });
  }
});

/** Upstream RBAC files inside the sidecars' module sources, by role name. */
const UPSTREAM = [
  {
    sidecar: "external-provisioner",
    module: "github.com/kubernetes-csi/external-provisioner/v6",
    files: ["deploy/kubernetes/rbac.yaml"],
    ours: ["cloak-external-provisioner", "cloak-external-provisioner-cfg"],
    // Why ours has less: no leader election (one provisioner per node); capacity objects are
    // owned by the pod (--capacity-ownerref-level=0), not a ReplicaSet.
    omitted: ["coordination.k8s.io/leases:*", "apps/replicasets:get"],
  },
  {
    sidecar: "external-resizer",
    module: "github.com/kubernetes-csi/external-resizer/v2",
    files: ["deploy/kubernetes/rbac.yaml"],
    ours: ["cloak-external-resizer"],
    omitted: ["coordination.k8s.io/leases:*"],
  },
  {
    sidecar: "external-snapshotter",
    module: "github.com/kubernetes-csi/external-snapshotter/v8",
    files: ["deploy/kubernetes/csi-snapshotter/rbac-csi-snapshotter.yaml"],
    ours: ["cloak-external-snapshotter"],
    // No leader election; cloak has no volume group snapshots (the feature gate stays off).
    omitted: ["coordination.k8s.io/leases:*", "groupsnapshot.storage.k8s.io/*:*"],
  },
] as const;

function flatten(rules: readonly V1PolicyRule[]): Set<string> {
  const out = new Set<string>();
  for (const r of rules) {
    for (const g of r.apiGroups ?? [""]) for (const res of r.resources ?? []) for (const v of r.verbs) out.add(`${g === "" ? "core" : g}/${res}:${v}`);
  }
  return out;
}

function omittedBy(patterns: readonly string[], grant: string): boolean {
  return patterns.some((p) => new RegExp(`^${p.replace(/[.]/g, "\\.").replace(/\*/g, "[^:]*")}$`).test(grant));
}

describe("the sidecars' roles against their projects' RBAC files", () => {
  let ours: KubeObject[];
  beforeAll(async () => {
    ours = (await render("overlays/local")).filter((o) => o.kind === "ClusterRole" || o.kind === "Role");
  });
  const goMod = readFileSync(join(packageRoot(), "test/deploy/sidecars/go.mod"), "utf8");
  const modCache = process.env["CLOAK_GOMODCACHE"] ?? join(process.env["CACHE_DIR"] ?? "/var/cache/cloak", "go", "mod");

  for (const u of UPSTREAM) {
    it(`${u.sidecar}: the documented rules, minus the explained omissions`, () => {
      const version = new RegExp(`^\\s*${u.module.replace(/[./]/g, "\\$&")} (v\\S+)`, "m").exec(goMod)?.[1];
      expect(version).toBeDefined();
      const upstream = u.files.flatMap((f) =>
        parseYamlObjects(readFileSync(join(modCache, `${u.module}@${version}`, f), "utf8")).filter((o) => o.kind === "ClusterRole" || o.kind === "Role"),
      );
      const documented = flatten(upstream.flatMap((r) => (r as unknown as V1ClusterRole).rules ?? []));
      const granted = flatten(ours.filter((r) => (u.ours as readonly string[]).includes(r.metadata.name)).flatMap((r) => (r as unknown as V1ClusterRole).rules ?? []));
      const expected = [...documented].filter((g) => !omittedBy(u.omitted, g)).sort();
      expect([...granted].sort()).toEqual(expected);
      // Each omission still names something upstream documents (or it explains nothing).
      for (const p of u.omitted) expect([...documented].some((g) => omittedBy([p], g)), p).toBe(true);
    });
  }
});
