import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  CoreV1Api,
  CustomObjectsApi,
  PatchStrategy,
  StorageV1Api,
  setHeaderOptions,
  type V1DaemonSet,
  type V1Deployment,
  type V1PersistentVolume,
  type V1PodSpec,
} from "@kubernetes/client-node";
import { randomBytes, randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, open, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { luksFormat, isLuks2 } from "../../csi/luks/cryptsetup.js";
import { volumeImagePath } from "../../csi/disk/local/layout.js";
import { freePort } from "../apiserver/apiserver.js";
import { Daemon } from "../netns/daemon.js";
import { NAMESPACE, adminClient, deployCluster, find, kubectl, manifestsDir, readCloakKey, render, testRunner, type KubeObject } from "./kube.js";
import { waitFor } from "../support/wait.js";
import { serviceAccountToken, writeTokenKubeconfig } from "./tokens.js";
import { cloakArgv, container, hostCommand, writeSecretVolume, type PodIdentity } from "./pod-runner.js";
import { sidecarPaths, volumeControllersArgv, volumeControllersReady } from "./volume-controllers.js";

// Dynamic provisioning as a cluster does it, with the real pieces: the real external-provisioner,
// external-resizer (built from their Go modules at the versions the manifests pin) and
// kube-controller-manager's volume controllers, against the real API server, talking to cloak's
// plugin over its unix socket — each started with the arguments the rendered manifests give its
// container (pod-runner.ts), as the node plugin's service account, through a token bound to a
// Pod made from the DaemonSet. Missing: kubelet (NodeStage needs device-mapper: the VM tier
// covers it) and kube-scheduler, whose one job here — annotating the claim with the node it
// picked — the test does itself.

const NODE = "cloak-deploy-n1";
/** A second node, with its own plugin and sidecars: each must leave the other's volumes alone. */
const NODE2 = "cloak-deploy-n2";
const APP_NS = "cloak-deploy-apps";
const podName = (node: string) => `cloak-csi-node-${node}`;
const TOPOLOGY_KEY = "topology.csi.cloak.dev/node";
const GiB = 1024 ** 3;
const HEADER_BYTES = 16 * 1024 * 1024;

let dir: string;
let rendered: KubeObject[];
let csiPod: V1PodSpec;
const daemons = new Map<string, Daemon>();
let core: CoreV1Api;

/** What runs on one node: the plugin (restartable, with extra env) and its sidecars. */
interface NodeStack {
  readonly volumesDir: string;
  /** The pod-bound token of the node's plugin pod, as its controller and sidecars use it. */
  readonly kubeconfig: string;
  plugin(env?: Record<string, string>): Promise<Daemon>;
  readonly sidecars: Record<string, Restarted>;
}
const nodes = new Map<string, NodeStack>();
const stack = (node: string) => nodes.get(node) as NodeStack;
const volumesDir = () => stack(NODE).volumesDir;

async function start(name: string, argv: readonly string[], env: Record<string, string>, ready: (out: string) => boolean): Promise<Daemon> {
  const d = new Daemon({ name, argv, env, logFile: join(dir, `${name}.log`) });
  daemons.set(name, d);
  await d.waitForOutput(ready, 60_000);
  return d;
}

/**
 * A sidecar under kubelet's restart policy: the CSI sidecars exit when they lose the plugin's
 * socket (a plugin restart) and count on being restarted, which this does after a second.
 */
class Restarted {
  private current: Daemon;
  private stopped = false;
  restarts = 0;

  constructor(private readonly make: () => Daemon) {
    this.current = make();
    void this.watch();
  }

  get daemon(): Daemon {
    return this.current;
  }

  private async watch(): Promise<void> {
    for (;;) {
      await this.current.wait();
      if (this.stopped) return;
      await new Promise((r) => setTimeout(r, 1_000));
      if (this.stopped) return;
      this.restarts++;
      this.current = this.make();
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.current.stop("SIGTERM", 5_000);
  }
}
/** Materialises the Secret volumes of a pod spec under dir/<under>/<volume>. */
async function secretVolumes(spec: V1PodSpec, under: string, fsGroup: boolean): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const v of spec.volumes ?? []) {
    if (!v.secret?.secretName) continue;
    const path = join(dir, under, v.name);
    const secret = await core.readNamespacedSecret({ namespace: NAMESPACE, name: v.secret.secretName });
    await writeSecretVolume(secret, path, { defaultMode: v.secret.defaultMode ?? 0o644, fsGroup });
    out[v.name] = path;
  }
  return out;
}

const readPvc = () => core.readNamespacedPersistentVolumeClaim({ namespace: APP_NS, name: "data" });
const readPv = async (name: string): Promise<V1PersistentVolume | undefined> => {
  try {
    return await core.readPersistentVolume({ name });
  } catch (err) {
    if ((err as { code?: number }).code === 404) return undefined;
    throw err;
  }
};

beforeAll(async () => {
  const cluster = deployCluster();
  dir = join(cluster.dir, "provisioning");
  await mkdir(dir, { recursive: true });
  core = adminClient().makeApiClient(CoreV1Api);
  const storage = adminClient().makeApiClient(StorageV1Api);
  const run = testRunner();

  await kubectl(["apply", "-k", join(manifestsDir(), "overlays/local")]);
  rendered = await render("overlays/local");
  csiPod = find<V1DaemonSet>(rendered, "DaemonSet", "cloak-csi-node").spec?.template.spec as V1PodSpec;
  const keyservicePod = find<V1Deployment>(rendered, "Deployment", "cloak-keyservice").spec?.template.spec as V1PodSpec;

  // The key service's Secrets, made the way manifests/README.md tells an admin to.
  const keys = join(dir, "keys");
  await run({ file: cloakArgv()[0] ?? "", args: [...cloakArgv().slice(1), "keys", "init", keys], timeoutMs: 60_000 });
  await kubectl(["-n", NAMESPACE, "create", "secret", "generic", "cloak-keyservice-keys", `--from-file=${keys}/master-secret`, `--from-file=${keys}/salt`]);
  await kubectl(["-n", NAMESPACE, "create", "secret", "generic", "cloak-keyservice-tls", `--from-file=${keys}/server/`]);
  await kubectl(["-n", NAMESPACE, "create", "secret", "generic", "cloak-csi-node-keyservice-tls", `--from-file=${keys}/clients/csi-node/`]);

  // kube-controller-manager with the volume controllers only: binding, expansion, protection.
  await start("kube-controller-manager", volumeControllersArgv(cluster), {}, volumeControllersReady);

  // The key service, from its Deployment, on loopback ports, with its service account's token
  // (what the in-cluster configuration would read).
  const grpcPort = await freePort();
  const metricsPort = await freePort();
  const ksVolumes = await secretVolumes(keyservicePod, "keyservice", keyservicePod.securityContext?.fsGroup !== undefined);
  const ks = hostCommand({
    pod: { nodeName: NODE, podName: "cloak-keyservice-test", namespace: NAMESPACE },
    container: container(keyservicePod, "keyservice"),
    volumes: ksVolumes,
    images: { "cloak.invalid/cloak": cloakArgv() },
    rewrite: { "0.0.0.0:9000": `127.0.0.1:${grpcPort}`, "0.0.0.0:9464": `127.0.0.1:${metricsPort}` },
  });
  const ksToken = await serviceAccountToken(core, { namespace: NAMESPACE, serviceAccount: keyservicePod.serviceAccountName ?? "" });
  const ksKubeconfig = await writeTokenKubeconfig(join(dir, "keyservice.kubeconfig"), { server: cluster.url, caFile: cluster.caFile, token: ksToken });
  await start("keyservice", [...ks.argv, `--kubeconfig=${ksKubeconfig}`], ks.env, (out) => out.includes("key service ready"));

  const paths = await sidecarPaths();
  const images: Record<string, string[]> = {
    "cloak.invalid/cloak": cloakArgv(),
    "registry.k8s.io/sig-storage/csi-provisioner": [paths["CSI_PROVISIONER"] ?? ""],
    "registry.k8s.io/sig-storage/csi-resizer": [paths["CSI_RESIZER"] ?? ""],
    "registry.k8s.io/sig-storage/csi-snapshotter": [paths["CSI_SNAPSHOTTER"] ?? ""],
  };
  const template = find<V1DaemonSet>(rendered, "DaemonSet", "cloak-csi-node").spec?.template;

  /** One node as kubelet would run the DaemonSet's pod on it. */
  async function startNode(node: string): Promise<NodeStack> {
    // What kubelet makes when it registers the plugin on a node (here there is no kubelet; the
    // host tier registers the plugin with kubelet's own plugin manager, the cluster tier with kubelet).
    await core.createNode({ body: { metadata: { name: node, labels: { "kubernetes.io/hostname": node, [TOPOLOGY_KEY]: node } } } });
    await storage.createCSINode({
      body: { metadata: { name: node }, spec: { drivers: [{ name: "csi.cloak.dev", nodeID: node, topologyKeys: [TOPOLOGY_KEY] }] } },
    });
    const pod = await core.createNamespacedPod({
      namespace: NAMESPACE,
      body: { metadata: { name: podName(node), labels: template?.metadata?.labels ?? {} }, spec: { ...csiPod, nodeName: node } },
    });
    const identity: PodIdentity = { nodeName: node, podName: podName(node), namespace: NAMESPACE };
    const root = join(dir, node);
    const volumes = {
      ...(await secretVolumes(csiPod, join(node, "secrets"), false)),
      "socket-dir": join(root, "socket-dir"),
      "registration-dir": join(root, "registration-dir"),
      "kubelet-dir": join(root, "kubelet-dir"),
      "volumes-dir": join(root, "volumes-dir"),
      "keyservice-token": join(root, "keyservice-token"),
      dev: "/dev",
    };
    for (const d of ["socket-dir", "registration-dir", "kubelet-dir", "volumes-dir", "keyservice-token"] as const) await mkdir(volumes[d], { recursive: true });
    // The projected token kubelet would write for the key service, and the pod's own token
    // (automounted in the local overlay) that the sidecars and the plugin's controller use.
    const projected = csiPod.volumes?.find((v) => v.name === "keyservice-token")?.projected?.sources?.[0]?.serviceAccountToken;
    const sa = csiPod.serviceAccountName ?? "";
    await writeFile(
      join(volumes["keyservice-token"], projected?.path ?? "token"),
      await serviceAccountToken(core, { namespace: NAMESPACE, serviceAccount: sa, pod, audiences: [projected?.audience ?? ""], expirationSeconds: projected?.expirationSeconds ?? 600 }),
    );
    const token = await serviceAccountToken(core, { namespace: NAMESPACE, serviceAccount: sa, pod });
    const kubeconfig = await writeTokenKubeconfig(join(root, "csi-node.kubeconfig"), { server: cluster.url, caFile: cluster.caFile, token });
    // Two "nodes" share this host's network: each plugin's health port moves to a free one.
    const healthPort = await freePort();
    const pluginCommand = hostCommand({
      pod: identity,
      container: container(csiPod, "cloak-csi"),
      volumes,
      images,
      rewrite: { "cloak-keyservice.cloak-system.svc:9000": `127.0.0.1:${grpcPort}`, "0.0.0.0:9808": `127.0.0.1:${healthPort}` },
    });
    const plugin = (env: Record<string, string> = {}) =>
      start(`${node}-cloak-csi`, pluginCommand.argv, { ...pluginCommand.env, KUBECONFIG: kubeconfig, ...env }, (out) => out.includes("cloak CSI plugin started"));
    await plugin();
    // The manifests' own health and registration flags at work: live, and offering kubelet its socket.
    expect((await fetch(`http://127.0.0.1:${healthPort}/healthz`)).status).toBe(200);
    expect(existsSync(join(volumes["registration-dir"], "csi.cloak.dev-reg.sock"))).toBe(true);
    const sidecars: Record<string, Restarted> = {};
    for (const name of ["csi-provisioner", "csi-resizer", "csi-snapshotter"]) {
      const c = hostCommand({ pod: identity, container: container(csiPod, name), volumes, images });
      const sidecar = new Restarted(() => new Daemon({ name: `${node}-${name}`, argv: [...c.argv, `--kubeconfig=${kubeconfig}`], env: c.env, logFile: join(dir, `${node}-${name}.log`) }));
      sidecars[name] = sidecar;
      await sidecar.daemon.waitForOutput((out) => /Connected|Started|Starting/i.test(out), 60_000);
    }
    return { volumesDir: volumes["volumes-dir"], kubeconfig, plugin, sidecars };
  }
  for (const node of [NODE, NODE2]) nodes.set(node, await startNode(node));
  await kubectl(["create", "namespace", APP_NS]);
}, 300_000);

afterAll(async () => {
  for (const n of nodes.values()) for (const s of Object.values(n.sidecars)) await s.stop();
  for (const d of [...daemons.values()].reverse()) await d.stop("SIGTERM", 5_000);
  await kubectl(["delete", "namespace", APP_NS, "--wait=false"], { okExitCodes: [1] }).catch(() => undefined);
  // The Secrets it made in cloak's namespace, which the other files share (the KMS overlay's
  // test makes its own key service Secret).
  await kubectl(["-n", NAMESPACE, "delete", "secret", "--ignore-not-found", "cloak-keyservice-keys", "cloak-keyservice-tls", "cloak-csi-node-keyservice-tls"]).catch(() => undefined);
});

describe("provisioning through the real external-provisioner, external-resizer and external-snapshotter", () => {
  let pvName = "";
  let volumeId = "";
  let keyId = "";

  it("publishes each node's free space for the scheduler (CSIStorageCapacity owned by its pod)", async () => {
    const storage = adminClient().makeApiClient(StorageV1Api);
    for (const node of [NODE, NODE2]) {
      const capacity = await waitFor(`a CSIStorageCapacity for ${node}`, async () => {
        const list = await storage.listNamespacedCSIStorageCapacity({ namespace: NAMESPACE });
        return list.items.find((c) => c.nodeTopology?.matchLabels?.[TOPOLOGY_KEY] === node && c.storageClassName === "cloak-encrypted");
      }, 60_000);
      expect(capacity.capacity).toBeTruthy();
      expect(capacity.metadata?.ownerReferences?.[0]).toMatchObject({ kind: "Pod", name: podName(node) });
    }
  });

  it("gives a claim on cloak-encrypted a bound PV whose handle is a cloak volume on the node", async () => {
    await core.createNamespacedPersistentVolumeClaim({
      namespace: APP_NS,
      body: {
        metadata: { name: "data" },
        spec: { accessModes: ["ReadWriteOnce"], storageClassName: "cloak-encrypted", resources: { requests: { storage: "1Gi" } } },
      },
    });
    // The scheduler's part, for a pod using the claim: it picked this node.
    await core.patchNamespacedPersistentVolumeClaim(
      { namespace: APP_NS, name: "data", body: { metadata: { annotations: { "volume.kubernetes.io/selected-node": NODE } } } },
      setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
    );
    const pvc = await waitFor("the claim bound", async () => {
      const c = await readPvc();
      return c.status?.phase === "Bound" ? c : undefined;
    }, 90_000);
    pvName = pvc.spec?.volumeName ?? "";
    const pv = (await readPv(pvName)) as V1PersistentVolume;
    volumeId = pv.spec?.csi?.volumeHandle ?? "";
    expect(pv.spec?.csi?.driver).toBe("csi.cloak.dev");
    expect(pv.spec?.csi?.fsType).toBe("ext4");
    expect(volumeId).toMatch(/^vol-[0-9a-f-]{36}$/);
    expect(pv.spec?.claimRef).toMatchObject({ namespace: APP_NS, name: "data" });
    expect(pv.spec?.nodeAffinity?.required?.nodeSelectorTerms).toEqual([
      { matchExpressions: [{ key: TOPOLOGY_KEY, operator: "In", values: [NODE] }] },
    ]);
    // At least what was asked: the LUKS header comes on top, in the file, not out of the claim.
    expect(Number(pv.spec?.capacity?.["storage"]?.toString().replace(/Gi$/, "")) * GiB).toBeGreaterThanOrEqual(GiB);
    const file = volumeImagePath(volumesDir(), volumeId);
    expect((await stat(file)).size).toBeGreaterThanOrEqual(GiB + HEADER_BYTES);
    expect(existsSync(join(volumesDir(), "records", "volumes", `${volumeId}.json`))).toBe(true);
    // The key id the controller chose is in the PV's immutable attributes and in its lineage
    // record, written by n1's plugin for n1.
    keyId = pv.spec?.csi?.volumeAttributes?.["cloak.dev/key-id"] ?? "";
    expect(keyId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect((await readCloakKey(keyId))?.spec).toEqual({ driver: "csi.cloak.dev", node: NODE, volumes: [volumeId], snapshots: [], revoked: false });
    // Made by n1's provisioner only: the other node was not even asked.
    expect(existsSync(volumeImagePath(stack(NODE2).volumesDir, volumeId))).toBe(false);
    expect(daemons.get(`${NODE2}-cloak-csi`)?.stdout).not.toContain("Controller/CreateVolume");
  }, 120_000);

  it("grows the volume when the claim asks for more (ControllerExpandVolume through the resizer)", async () => {
    expect(volumeId, "needs the provisioned volume").not.toBe("");
    await core.patchNamespacedPersistentVolumeClaim(
      { namespace: APP_NS, name: "data", body: { spec: { resources: { requests: { storage: "2Gi" } } } } },
      setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
    );
    const pv = await waitFor("the PV grown to 2Gi", async () => {
      const v = await readPv(pvName);
      return v?.spec?.capacity?.["storage"] === "2Gi" ? v : undefined;
    }, 90_000);
    expect(pv.spec?.csi?.volumeHandle).toBe(volumeId);
    expect((await stat(volumeImagePath(volumesDir(), volumeId))).size).toBeGreaterThanOrEqual(2 * GiB + HEADER_BYTES);
    // The filesystem grows when kubelet calls NodeExpandVolume on the node: pending until then.
    const pvc = await waitFor("node expansion pending", async () => {
      const c = await readPvc();
      return c.status?.allocatedResourceStatuses?.["storage"] === "NodeResizePending" ? c : undefined;
    }, 60_000);
    expect(pvc.status?.allocatedResources?.["storage"]).toBe("2Gi");
  }, 120_000);

  it("snapshots the volume and deletes the snapshot through the real external-snapshotter (node-deployment)", async () => {
    expect(volumeId, "needs the provisioned volume").not.toBe("");
    const custom = adminClient().makeApiClient(CustomObjectsApi);
    const api = { group: "snapshot.storage.k8s.io", version: "v1" };
    const snapshot = (await custom.createNamespacedCustomObject({
      ...api,
      namespace: APP_NS,
      plural: "volumesnapshots",
      body: { apiVersion: "snapshot.storage.k8s.io/v1", kind: "VolumeSnapshot", metadata: { name: "data-snap" }, spec: { source: { persistentVolumeClaimName: "data" }, volumeSnapshotClassName: "cloak-snapshots" } },
    })) as { metadata: { uid: string } };
    // The snapshot-controller's part (run with --enable-distributed-snapshotting): a content for
    // the snapshot, labelled with the volume's node, protected by its finalizer.
    const contentName = `snapcontent-${snapshot.metadata.uid}`;
    await custom.createClusterCustomObject({
      ...api,
      plural: "volumesnapshotcontents",
      body: {
        apiVersion: "snapshot.storage.k8s.io/v1",
        kind: "VolumeSnapshotContent",
        metadata: {
          name: contentName,
          labels: { "snapshot.storage.kubernetes.io/managed-by": NODE },
          finalizers: ["snapshot.storage.kubernetes.io/volumesnapshotcontent-bound-protection"],
        },
        spec: {
          deletionPolicy: "Delete",
          driver: "csi.cloak.dev",
          source: { volumeHandle: volumeId },
          volumeSnapshotClassName: "cloak-snapshots",
          volumeSnapshotRef: { apiVersion: "snapshot.storage.k8s.io/v1", kind: "VolumeSnapshot", name: "data-snap", namespace: APP_NS, uid: snapshot.metadata.uid },
        },
      },
    });
    type Content = { metadata: { annotations?: Record<string, string> }; status?: { readyToUse?: boolean; snapshotHandle?: string; restoreSize?: number } };
    const readContent = async () => {
      try {
        return (await custom.getClusterCustomObject({ ...api, plural: "volumesnapshotcontents", name: contentName })) as Content;
      } catch (err) {
        if ((err as { code?: number }).code === 404) return undefined;
        throw err;
      }
    };
    const ready = await waitFor("the snapshot ready", async () => {
      const c = await readContent();
      return c?.status?.readyToUse === true ? c : undefined;
    }, 90_000);
    const snapId = ready.status?.snapshotHandle ?? "";
    expect(snapId).toMatch(/^snap-/);
    expect(ready.status?.restoreSize).toBeGreaterThanOrEqual(2 * GiB);
    const snapFile = join(volumesDir(), "snapshots", `${snapId}.img`);
    expect(existsSync(snapFile)).toBe(true);
    // The snapshot carries the volume's header, so it joins the key's lineage.
    expect((await readCloakKey(keyId))?.spec).toMatchObject({ volumes: [volumeId], snapshots: [snapId], revoked: false });
    expect(daemons.get(`${NODE2}-cloak-csi`)?.stdout).not.toContain("Controller/CreateSnapshot");

    // Deleting the VolumeSnapshot: the controller marks the content, then deletes it; the
    // sidecar deletes the snapshot and lets the object go.
    await custom.patchClusterCustomObject(
      { ...api, plural: "volumesnapshotcontents", name: contentName, body: { metadata: { annotations: { "snapshot.storage.kubernetes.io/volumesnapshot-being-deleted": "yes" } } } },
      setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
    );
    await custom.deleteClusterCustomObject({ ...api, plural: "volumesnapshotcontents", name: contentName });
    await waitFor("the snapshot content gone", async () => (await readContent()) === undefined, 90_000);
    expect(existsSync(snapFile)).toBe(false);
    expect((await readCloakKey(keyId))?.spec).toMatchObject({ volumes: [volumeId], snapshots: [], revoked: false });
    await custom.deleteNamespacedCustomObject({ ...api, namespace: APP_NS, plural: "volumesnapshots", name: "data-snap" });
  }, 240_000);

  it("deletes the volume with the claim: the header is erased before the file goes", async () => {
    expect(volumeId, "needs the provisioned volume").not.toBe("");
    const file = volumeImagePath(volumesDir(), volumeId);
    const run = testRunner();
    // The header NodeStageVolume would have written (needs device-mapper only to open).
    await run(luksFormat({ device: file, uuid: randomUUID(), passphrase: randomBytes(32), integrity: false }));
    expect((await run(isLuks2(file))).exitCode).toBe(0);
    const headerBefore = await readHead(file);

    // Stop the plugin right after the erase, before the file is removed, to look at it.
    await daemons.get(`${NODE}-cloak-csi`)?.stop("SIGTERM");
    const stopped = await stack(NODE).plugin({ CLOAK_FAILPOINTS: "delete:after-erase" });
    await core.deleteNamespacedPersistentVolumeClaim({ namespace: APP_NS, name: "data" });
    await waitFor("the plugin to reach the failpoint", async () => !stopped.running, 90_000);
    expect(stopped.stdout).toContain("failpoint delete:after-erase reached");
    expect((await run(isLuks2(file))).exitCode).not.toBe(0);
    const headerAfter = await readHead(file);
    expect(headerAfter.equals(headerBefore)).toBe(false);
    // Nothing of the LUKS2 header survives: not its magic, not its JSON area.
    expect(headerAfter.includes(Buffer.from("LUKS\xba\xbe", "latin1"))).toBe(false);
    expect(headerAfter.includes(Buffer.from('"keyslots"'))).toBe(false);

    // Back up: the provisioner (restarted, as kubelet restarts a sidecar that lost its
    // plugin) retries DeleteVolume, which finishes the job.
    await stack(NODE).plugin();
    await waitFor("the PV deleted", async () => (await readPv(pvName)) === undefined, 120_000);
    expect(existsSync(file)).toBe(false);
    expect(existsSync(join(volumesDir(), "records", "volumes", `${volumeId}.json`))).toBe(false);
    // Its last volume and snapshot gone, the key is revoked, for good.
    const revoked = await readCloakKey(keyId);
    expect(revoked?.spec).toMatchObject({ driver: "csi.cloak.dev", node: NODE, volumes: [], snapshots: [], revoked: true });
    expect(Date.parse(revoked?.spec.revokedAt ?? "")).toBeGreaterThan(Date.now() - 300_000);
    const unrevoke = await kubectl(["patch", "cloakkey", keyId, "--type=merge", "-p", '{"spec":{"revoked":false}}'], { okExitCodes: [1] });
    expect(unrevoke.stderr).toMatch(/a revoked key stays revoked/);
    const reuse = await kubectl(["patch", "cloakkey", keyId, "--type=merge", "-p", `{"spec":{"volumes":["${volumeId}"]}}`], { okExitCodes: [1] });
    expect(reuse.stderr).toMatch(/a revoked key has no volumes or snapshots/);
  }, 240_000);

  it("lets a node's plugin write only its own node's key records (admission policy)", async () => {
    const other = randomUUID();
    const record = (node: string) =>
      JSON.stringify({ apiVersion: "cloak.dev/v1alpha1", kind: "CloakKey", metadata: { name: other }, spec: { driver: "csi.cloak.dev", node, volumes: ["vol-x"] } });
    // n2's token may not make (or change) a key of n1 ...
    const refused = await kubectl(["create", "-f", "-"], { input: record(NODE), kubeconfig: stack(NODE2).kubeconfig, okExitCodes: [1] });
    expect(refused.stderr).toMatch(new RegExp(`the node plugin on ${NODE2} may not write the key of another node \\(${NODE}\\)`));
    await kubectl(["create", "-f", "-"], { input: record(NODE), kubeconfig: stack(NODE).kubeconfig });
    // An update (what the controller's compare-and-swap sends) from n2: refused by the policy.
    const current = JSON.parse((await kubectl(["get", "cloakkey", other, "-o", "json"])).stdout) as { spec: Record<string, unknown> };
    const emptied = JSON.stringify({ ...current, spec: { ...current.spec, volumes: [] } });
    const replaced = await kubectl(["replace", "-f", "-"], { input: emptied, kubeconfig: stack(NODE2).kubeconfig, okExitCodes: [1] });
    expect(replaced.stderr).toMatch(/may not write the key of another node/);
    // ... nor delete one: RBAC gives the plugins no delete.
    const deleted = await kubectl(["delete", "cloakkey", other], { kubeconfig: stack(NODE2).kubeconfig, okExitCodes: [1] });
    expect(deleted.stderr).toMatch(/forbidden/);
    await kubectl(["delete", "cloakkey", other]);
  });
});

async function readHead(file: string): Promise<Buffer> {
  const handle = await open(file, "r");
  try {
    const buf = Buffer.alloc(HEADER_BYTES);
    await handle.read(buf, 0, HEADER_BYTES, 0);
    return buf;
  } finally {
    await handle.close();
  }
}
