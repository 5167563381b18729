import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  CoreV1Api,
  CustomObjectsApi,
  PatchStrategy,
  StorageV1Api,
  setHeaderOptions,
  type V1Deployment,
  type V1PersistentVolume,
  type V1PodSpec,
  type V1TypedLocalObjectReference,
} from "@kubernetes/client-node";
import { existsSync } from "node:fs";
import { mkdir, readFile, stat, writeFile } from "node:fs/promises";
import { join, relative } from "node:path";
import { stringify } from "yaml";
import type { CommandResult } from "../../lib/exec.js";
import { packageRoot } from "../../lib/paths.js";
import { freePort } from "../apiserver/apiserver.js";
import { Daemon } from "../netns/daemon.js";
import { scrubTree } from "../support/scrub.js";
import { waitFor } from "../support/wait.js";
import { NAMESPACE, adminClient, deployCluster, find, kubectl, manifestsDir, parseYamlObjects, readCloakKey, testRunner, type KubeObject } from "./kube.js";
import { cloakArgv, container, hostCommand } from "./pod-runner.js";
import { sidecarPaths, volumeControllersArgv, volumeControllersReady } from "./volume-controllers.js";
import { serviceAccountToken, writeTokenKubeconfig } from "./tokens.js";

// The wrapper's controller half as a cluster runs it: manifests/overlays/wrap (its inputs set
// the way an admin sets them), with the block test driver's attach-required profile as the
// vendor's private controller in cloak's pod, and the real external-provisioner,
// external-attacher, external-resizer and external-snapshotter — each started with the
// arguments the rendered Deployment gives its container, as the controller's service account —
// against the real API server and kube-controller-manager's volume controllers. Missing:
// kubelet (NodeStage needs device-mapper: the VM tier covers it through the wrapper), the
// scheduler, the attach-detach controller and the snapshot-controller, whose one job each here
// the test does itself (selected-node annotation, VolumeAttachment, snapshot content/status).

const NODE = "wrap-n1";
const DRIVER = "block.cloak.dev";
const INNER = "block.test.cloak.dev";
const APP_NS = "cloak-wrap-apps";
const TOPOLOGY_KEY = "topology.blockdriver.test/node";
const MiB = 1024 * 1024;
const HEADER = 16 * MiB;

let dir: string;
let core: CoreV1Api;
let storage: StorageV1Api;
let custom: CustomObjectsApi;
let rendered: KubeObject[];
const daemons: Daemon[] = [];
let healthPort = 0;
let innerDaemon: Daemon | undefined;
const dryRuns = new Map<string, CommandResult>();
let stateDir: string;

/** The admin's overlay: the two inputs, the vendor's class parameter and its controller container. */
async function writeOverlay(at: string): Promise<void> {
  await mkdir(at, { recursive: true });
  const wrap = relative(at, join(manifestsDir(), "overlays/wrap"));
  await writeFile(
    join(at, "kustomization.yaml"),
    stringify({
      apiVersion: "kustomize.config.k8s.io/v1beta1",
      kind: "Kustomization",
      resources: [wrap],
      components: [`${wrap}/inputs`],
      configMapGenerator: [
        {
          name: "cloak-wrap",
          namespace: NAMESPACE,
          behavior: "merge",
          options: { disableNameSuffixHash: true },
          literals: [`driverName=${DRIVER}`, `innerNodeEndpoint=unix:///var/lib/kubelet/plugins/${INNER}/csi.sock`],
        },
      ],
      patches: [
        { patch: stringify({ apiVersion: "storage.k8s.io/v1", kind: "StorageClass", metadata: { name: "cloak-wrapped" }, parameters: { type: "ssd" } }) },
        {
          patch: stringify({
            apiVersion: "apps/v1",
            kind: "Deployment",
            metadata: { name: "cloak-csi-controller", namespace: NAMESPACE },
            spec: {
              template: {
                spec: {
                  containers: [
                    {
                      name: "blockdriver",
                      image: "cloak.invalid/blockdriver:test",
                      args: ["--endpoint=unix:///csi/inner/csi.sock", "--profile=attach", `--node-id=${NODE}`, "--state-dir=/var/lib/blockdriver", `--driver-name=${INNER}`],
                      volumeMounts: [
                        { name: "socket-dir", mountPath: "/csi" },
                        { name: "inner-state", mountPath: "/var/lib/blockdriver" },
                      ],
                    },
                  ],
                  volumes: [{ name: "inner-state", emptyDir: {} }],
                },
              },
            },
          }),
        },
      ],
    }),
  );
}

beforeAll(async () => {
  const cluster = deployCluster();
  dir = join(cluster.dir, "wrap");
  stateDir = join(dir, "inner-state");
  await mkdir(stateDir, { recursive: true });
  core = adminClient().makeApiClient(CoreV1Api);
  storage = adminClient().makeApiClient(StorageV1Api);
  custom = adminClient().makeApiClient(CustomObjectsApi);
  const run = testRunner();

  const overlay = join(dir, "overlay");
  await writeOverlay(overlay);
  rendered = parseYamlObjects((await kubectl(["kustomize", overlay])).stdout);
  await kubectl(["apply", "-f", join(manifestsDir(), "base/namespace.yaml")]);
  // Before anything of it exists: the examples name other drivers in the same classes, which
  // a real cluster holds only one of at a time (a class's provisioner cannot change).
  for (const target of [overlay, ...["aws-ebs", "gce-pd", "azure-disk"].map((e) => join(manifestsDir(), "overlays/wrap-examples", e))]) {
    dryRuns.set(target, await kubectl(["apply", "--dry-run=server", "-k", target], { okExitCodes: [1] }));
  }
  // What this test needs of the overlay (the node DaemonSet it does not run: no kubelet here,
  // and the shared API server's other files run the local overlay's).
  const needed = rendered.filter(
    (o) =>
      ["CustomResourceDefinition", "ConfigMap", "CSIDriver", "StorageClass", "VolumeSnapshotClass", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"].includes(o.kind) ||
      (o.kind === "ServiceAccount" && o.metadata.name === "cloak-csi-controller"),
  );
  await kubectl(["apply", "-f", "-"], { input: needed.map((o) => JSON.stringify(o)).join("\n") });

  await start("kube-controller-manager", volumeControllersArgv(cluster), volumeControllersReady);

  // What the vendor's node plugin and registrar make known for the node: cloak's node plugin
  // answers NodeGetInfo with the vendor's node id and topology (test/vm/wrap checks that).
  await core.createNode({ body: { metadata: { name: NODE, labels: { "kubernetes.io/hostname": NODE, [TOPOLOGY_KEY]: NODE } } } });
  await storage.createCSINode({ body: { metadata: { name: NODE }, spec: { drivers: [{ name: DRIVER, nodeID: NODE, topologyKeys: [TOPOLOGY_KEY] }] } } });
  await kubectl(["create", "namespace", APP_NS]);

  const deployment = find<V1Deployment>(rendered, "Deployment", "cloak-csi-controller");
  const spec = deployment.spec?.template.spec as V1PodSpec;
  const pod = await core.createNamespacedPod({
    namespace: NAMESPACE,
    body: { metadata: { name: "cloak-csi-controller-test", labels: deployment.spec?.template.metadata?.labels ?? {} }, spec: { ...spec, nodeName: NODE } },
  });
  const token = await serviceAccountToken(core, { namespace: NAMESPACE, serviceAccount: spec.serviceAccountName ?? "", pod });
  const kubeconfig = await writeTokenKubeconfig(join(dir, "controller.kubeconfig"), { server: cluster.url, caFile: cluster.caFile, token });

  const paths = await sidecarPaths();
  const blockdriver = (await run({ file: join(packageRoot(), "test/blockdriver/build.sh"), args: ["--print-path"] })).stdout.trim();
  if (!existsSync(blockdriver)) throw new Error(`the block test driver is not built (${blockdriver}): run \`make blockdriver\``);
  const images: Record<string, string[]> = {
    "cloak.invalid/cloak": cloakArgv(),
    "cloak.invalid/blockdriver": [blockdriver],
    "registry.k8s.io/sig-storage/csi-provisioner": [paths["CSI_PROVISIONER"] ?? ""],
    "registry.k8s.io/sig-storage/csi-attacher": [paths["CSI_ATTACHER"] ?? ""],
    "registry.k8s.io/sig-storage/csi-resizer": [paths["CSI_RESIZER"] ?? ""],
    "registry.k8s.io/sig-storage/csi-snapshotter": [paths["CSI_SNAPSHOTTER"] ?? ""],
  };
  const volumes = { "socket-dir": join(dir, "socket-dir"), "inner-state": stateDir };
  await mkdir(volumes["socket-dir"], { recursive: true });
  const identity = { nodeName: NODE, podName: "cloak-csi-controller-test", namespace: NAMESPACE };
  const command = (name: string) => hostCommand({ pod: identity, container: container(spec, name), volumes, images });

  const inner = command("blockdriver");
  innerDaemon = await start("blockdriver", inner.argv, (out) => out.includes("serving on"), inner.env);
  // This host's network is shared: the controller's health port moves to a free one.
  healthPort = await freePort();
  const cloak = hostCommand({ pod: identity, container: container(spec, "cloak-csi"), volumes, images, rewrite: { "0.0.0.0:9808": `127.0.0.1:${healthPort}` } });
  // As the controller's service account (its projected token in a cluster): it writes the key records.
  await start("cloak-csi", cloak.argv, (out) => out.includes("cloak CSI plugin started"), { ...cloak.env, KUBECONFIG: kubeconfig });
  for (const name of ["csi-provisioner", "csi-attacher", "csi-resizer", "csi-snapshotter"]) {
    const c = command(name);
    await start(name, [...c.argv, `--kubeconfig=${kubeconfig}`], (out) => /Connected|Started|Starting|acquired lease/i.test(out), c.env);
  }
}, 300_000);

afterAll(async () => {
  for (const d of [...daemons].reverse()) await d.stop("SIGTERM", 5_000);
  await kubectl(["delete", "namespace", APP_NS, "--wait=false"], { okExitCodes: [1] }).catch(() => undefined);
  if (dir) await scrubTree(dir);
});

async function start(name: string, argv: readonly string[], ready: (out: string) => boolean, env: Record<string, string> = {}): Promise<Daemon> {
  const d = new Daemon({ name, argv, env, logFile: join(dir, `${name}.log`) });
  daemons.push(d);
  await d.waitForOutput(ready, 60_000);
  return d;
}

const readPv = async (name: string): Promise<V1PersistentVolume | undefined> => {
  try {
    return await core.readPersistentVolume({ name });
  } catch (err) {
    if ((err as { code?: number }).code === 404) return undefined;
    throw err;
  }
};
/** The CloakKey record of a key id, which must exist. */
const keyRecord = async (keyId: string) => {
  const record = await readCloakKey(keyId);
  if (!record) throw new Error(`no CloakKey ${keyId}`);
  return record;
};
const keyIdOf = (pv: V1PersistentVolume | undefined) => pv?.spec?.csi?.volumeAttributes?.["cloak.dev/key-id"] ?? "";
const readPvc = (name: string) => core.readNamespacedPersistentVolumeClaim({ namespace: APP_NS, name });
const merge = setHeaderOptions("Content-Type", PatchStrategy.MergePatch);
/** The inner driver's files of an id it issued (test/blockdriver/state.go). */
const innerFile = (id: string, ext: "img" | "json") =>
  join(stateDir, id.includes("/snapshots/") ? "snapshots" : "volumes", `${id.slice(id.lastIndexOf("/") + 1)}.${ext}`);

async function claim(name: string, size: string, dataSource?: V1TypedLocalObjectReference): Promise<V1PersistentVolume> {
  await core.createNamespacedPersistentVolumeClaim({
    namespace: APP_NS,
    body: {
      metadata: { name, annotations: { "volume.kubernetes.io/selected-node": NODE } },
      spec: { accessModes: ["ReadWriteOnce"], storageClassName: "cloak-wrapped", resources: { requests: { storage: size } }, ...(dataSource ? { dataSource } : {}) },
    },
  });
  const pvc = await waitFor(`claim ${name} bound`, async () => {
    const c = await readPvc(name);
    return c.status?.phase === "Bound" ? c : undefined;
  }, 90_000);
  return (await readPv(pvc.spec?.volumeName ?? "")) as V1PersistentVolume;
}

describe("the wrap overlay", () => {
  it("is accepted by the API server as rendered, and so is each cloud's example", async () => {
    expect(dryRuns.size).toBe(4);
    for (const [target, out] of dryRuns) {
      expect(out.exitCode, `${target}: ${out.stderr}`).toBe(0);
      expect(out.stderr, target).not.toMatch(/warning/i);
      expect(out.stdout.trim().split("\n").every((l) => l.endsWith("(server dry run)")), out.stdout).toBe(true);
    }
    const node = find<{ spec: { template: { spec: V1PodSpec } } }>(rendered, "DaemonSet", "cloak-csi-node");
    const cloak = container(node.spec.template.spec, "cloak-csi");
    expect(cloak.args).toEqual(expect.arrayContaining(["--wrap=$(INNER_ENDPOINT)", "--services=node"]));
    expect(cloak.env).toEqual(
      expect.arrayContaining([
        { name: "INNER_ENDPOINT", value: `unix:///var/lib/kubelet/plugins/${INNER}/csi.sock` },
        { name: "DRIVER_NAME", value: DRIVER },
      ]),
    );
    expect(node.spec.template.spec.volumes?.find((v) => v.name === "socket-dir")?.hostPath?.path).toBe(`/var/lib/kubelet/plugins/${DRIVER}`);
    expect(node.spec.template.spec.volumes?.some((v) => v.name === "volumes-dir")).toBe(false);
    // cloak registers itself with kubelet under its own name and serves its own health: no sidecars.
    expect(node.spec.template.spec.containers.map((c) => c.name)).toEqual(["cloak-csi"]);
    expect(cloak.args).toEqual(
      expect.arrayContaining(["--registration-dir=/registration", "--kubelet-endpoint=/var/lib/kubelet/plugins/$(DRIVER_NAME)/csi.sock", "--health-listen=0.0.0.0:9808"]),
    );
    expect(find<{ spec: { attachRequired: boolean } }>(rendered, "CSIDriver", DRIVER).spec.attachRequired).toBe(true);
    expect(find<{ provisioner: string }>(rendered, "StorageClass", "cloak-wrapped").provisioner).toBe(DRIVER);
  });
});

describe("the wrap controller's health", () => {
  it("is live, and ready while the inner controller answers Probe", async () => {
    expect((await fetch(`http://127.0.0.1:${healthPort}/healthz`)).status).toBe(200);
    const ready = await fetch(`http://127.0.0.1:${healthPort}/readyz`);
    expect(ready.status, await ready.text()).toBe(200);
  });
});

describe("provisioning through cloak in front of the vendor's driver", () => {
  let pv: V1PersistentVolume;
  let handle = "";
  let keyId = "";

  it("gives a claim a PV whose handle is the inner driver's volume id", async () => {
    pv = await claim("data", "64Mi");
    handle = pv.spec?.csi?.volumeHandle ?? "";
    expect(pv.spec?.csi?.driver).toBe(DRIVER);
    expect(pv.spec?.csi?.fsType).toBe("ext4");
    expect(handle).toMatch(new RegExp(`^blockdriver/nodes/${NODE}/disks/vol-[0-9a-f]{24}$`));
    expect(pv.spec?.csi?.volumeAttributes).toMatchObject({ "blockdriver.test/profile": "attach" });
    expect(pv.spec?.capacity?.["storage"]).toBe("64Mi");
    expect(pv.spec?.nodeAffinity?.required?.nodeSelectorTerms).toEqual([{ matchExpressions: [{ key: TOPOLOGY_KEY, operator: "In", values: [NODE] }] }]);
    // The inner disk: the claim plus the LUKS2 header; the class's vendor parameter reached it, cloak's did not.
    expect((await stat(innerFile(handle, "img"))).size).toBe(64 * MiB + HEADER);
  }, 120_000);

  it("binds the volume to a new key id: in the PV, and in a CloakKey listing the inner volume id", async () => {
    expect(handle, "needs the provisioned volume").not.toBe("");
    keyId = keyIdOf(pv);
    expect(keyId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    const record = await keyRecord(keyId);
    // No node: a wrapped disk is attached wherever a pod needs it.
    expect(record.spec).toMatchObject({ driver: DRIVER, volumes: [handle], revoked: false });
    expect(record.spec.node).toBeUndefined();
  });

  it("attaches it: a VolumeAttachment the attacher marks attached, with the inner driver's publish_context", async () => {
    expect(handle, "needs the provisioned volume").not.toBe("");
    await storage.createVolumeAttachment({
      body: { metadata: { name: "wrap-va-data" }, spec: { attacher: DRIVER, nodeName: NODE, source: { persistentVolumeName: pv.metadata?.name ?? "" } } },
    });
    const va = await waitFor("the attachment attached", async () => {
      const a = await storage.readVolumeAttachment({ name: "wrap-va-data" });
      return a.status?.attached ? a : undefined;
    }, 90_000);
    const device = va.status?.attachmentMetadata?.["devicePath"] ?? "";
    expect(device).toMatch(/^\/dev\/loop\d+$/);
    const backing = (await readFile(`/sys/block/${device.replace("/dev/", "")}/loop/backing_file`, "utf8")).trim();
    expect(backing).toBe(innerFile(handle, "img"));
  }, 120_000);

  it("expands it: the inner disk by the claim's growth, node expansion pending", async () => {
    expect(handle, "needs the provisioned volume").not.toBe("");
    await core.patchNamespacedPersistentVolumeClaim({ namespace: APP_NS, name: "data", body: { spec: { resources: { requests: { storage: "128Mi" } } } } }, merge);
    await waitFor("the PV grown", async () => (await readPv(pv.metadata?.name ?? ""))?.spec?.capacity?.["storage"] === "128Mi", 90_000);
    expect((await stat(innerFile(handle, "img"))).size).toBe(128 * MiB + HEADER);
    // Always NodeExpandVolume: cloak must grow the dm-crypt mapping, whatever the inner driver says.
    await waitFor("node expansion pending", async () => (await readPvc("data")).status?.allocatedResourceStatuses?.["storage"] === "NodeResizePending", 60_000);
  }, 120_000);

  let snapshotHandle = "";
  let contentName = "";
  it("snapshots it through the snapshotter: the inner driver's snapshot, sized as the claim", async () => {
    expect(handle, "needs the provisioned volume").not.toBe("");
    const api = { group: "snapshot.storage.k8s.io", version: "v1" };
    const snapshot = (await custom.createNamespacedCustomObject({
      ...api,
      namespace: APP_NS,
      plural: "volumesnapshots",
      body: { apiVersion: "snapshot.storage.k8s.io/v1", kind: "VolumeSnapshot", metadata: { name: "data-snap" }, spec: { source: { persistentVolumeClaimName: "data" }, volumeSnapshotClassName: "cloak-wrapped-snapshots" } },
    })) as { metadata: { uid: string } };
    // The snapshot-controller's part: a content bound to the snapshot.
    contentName = `snapcontent-${snapshot.metadata.uid}`;
    await custom.createClusterCustomObject({
      ...api,
      plural: "volumesnapshotcontents",
      body: {
        apiVersion: "snapshot.storage.k8s.io/v1",
        kind: "VolumeSnapshotContent",
        metadata: { name: contentName, finalizers: ["snapshot.storage.kubernetes.io/volumesnapshotcontent-bound-protection"] },
        spec: {
          deletionPolicy: "Delete",
          driver: DRIVER,
          source: { volumeHandle: handle },
          volumeSnapshotClassName: "cloak-wrapped-snapshots",
          volumeSnapshotRef: { apiVersion: "snapshot.storage.k8s.io/v1", kind: "VolumeSnapshot", name: "data-snap", namespace: APP_NS, uid: snapshot.metadata.uid },
        },
      },
    });
    type Content = { status?: { readyToUse?: boolean; snapshotHandle?: string; restoreSize?: number } };
    const ready = await waitFor("the snapshot ready", async () => {
      const c = (await custom.getClusterCustomObject({ ...api, plural: "volumesnapshotcontents", name: contentName })) as Content;
      return c.status?.readyToUse === true ? c : undefined;
    }, 90_000);
    snapshotHandle = ready.status?.snapshotHandle ?? "";
    expect(snapshotHandle).toMatch(/^blockdriver\/snapshots\/snap-[0-9a-f]{24}$/);
    expect(ready.status?.restoreSize).toBe(128 * MiB);
    expect(existsSync(innerFile(snapshotHandle, "img"))).toBe(true);
    // The snapshot copies the header: it joins its volume's key.
    expect((await keyRecord(keyId)).spec.snapshots).toEqual([snapshotHandle]);
    // The snapshot-controller's part again: the snapshot bound and ready, for the provisioner.
    await custom.patchNamespacedCustomObjectStatus(
      { ...api, namespace: APP_NS, plural: "volumesnapshots", name: "data-snap", body: { status: { boundVolumeSnapshotContentName: contentName, readyToUse: true, restoreSize: "128Mi" } } },
      merge,
    );
  }, 180_000);

  it("restores the snapshot as a new claim: the inner driver copies its snapshot (header and all)", async () => {
    expect(snapshotHandle, "needs the snapshot").not.toBe("");
    const restored = await claim("restored", "128Mi", { apiGroup: "snapshot.storage.k8s.io", kind: "VolumeSnapshot", name: "data-snap" });
    const id = restored.spec?.csi?.volumeHandle ?? "";
    expect(id).not.toBe(handle);
    expect(restored.spec?.capacity?.["storage"]).toBe("128Mi");
    const record = JSON.parse(await readFile(innerFile(id, "json"), "utf8")) as { sourceSnapshot?: string };
    expect(record.sourceSnapshot).toBe(snapshotHandle);
    expect((await stat(innerFile(id, "img"))).size).toBe(128 * MiB + HEADER);
    // It carries the snapshot's header, so its source's key id.
    expect(keyIdOf(restored)).toBe(keyId);
    expect((await keyRecord(keyId)).spec.volumes?.sort()).toEqual([handle, id].sort());
  }, 120_000);

  it("detaches and deletes: ControllerUnpublish and DeleteVolume reach the inner driver", async () => {
    expect(handle, "needs the provisioned volume").not.toBe("");
    await storage.deleteVolumeAttachment({ name: "wrap-va-data" });
    await waitFor("the attachment gone", async () => {
      try {
        await storage.readVolumeAttachment({ name: "wrap-va-data" });
        return undefined;
      } catch (err) {
        return (err as { code?: number }).code === 404 || undefined;
      }
    }, 90_000);
    const loops = (await testRunner()({ file: "losetup", args: ["--noheadings", "--output", "NAME", "--associated", innerFile(handle, "img")] })).stdout.trim();
    expect(loops).toBe("");
    const api = { group: "snapshot.storage.k8s.io", version: "v1" };
    await custom.deleteNamespacedCustomObject({ ...api, namespace: APP_NS, plural: "volumesnapshots", name: "data-snap" });
    // The snapshot-controller's part: the bound content marked for deletion, which makes the
    // snapshotter call DeleteSnapshot and drop its finalizer.
    await custom.patchClusterCustomObject(
      { ...api, plural: "volumesnapshotcontents", name: contentName, body: { metadata: { annotations: { "snapshot.storage.kubernetes.io/volumesnapshot-being-deleted": "yes" } } } },
      merge,
    );
    await custom.deleteClusterCustomObject({ ...api, plural: "volumesnapshotcontents", name: contentName });
    await waitFor("the inner snapshot deleted", async () => !existsSync(innerFile(snapshotHandle, "img")), 120_000);
    for (const name of ["restored", "data"]) await core.deleteNamespacedPersistentVolumeClaim({ namespace: APP_NS, name });
    await waitFor("the inner disk deleted", async () => !existsSync(innerFile(handle, "img")), 120_000);
    // The key's last volume and snapshot gone: revoked, the erase of a wrapped disk.
    const revoked = await waitFor("the key revoked", async () => {
      const record = await keyRecord(keyId);
      return record.spec.revoked ? record : undefined;
    }, 120_000);
    expect(revoked.spec).toMatchObject({ volumes: [], snapshots: [], revoked: true });
  }, 240_000);
});

// Last: it stops the inner driver.
describe("the wrap controller without its inner controller", () => {
  it("is not ready, and still live (a restart of cloak would not bring the inner driver back)", async () => {
    await innerDaemon?.stop("SIGTERM", 5_000);
    await waitFor("not ready", async () => (await fetch(`http://127.0.0.1:${healthPort}/readyz`)).status === 503 || undefined, 60_000);
    expect((await fetch(`http://127.0.0.1:${healthPort}/healthz`)).status).toBe(200);
  }, 90_000);
});
