import { beforeAll, describe, expect, it } from "vitest";
import type { V1CSIDriver, V1DaemonSet, V1Deployment, V1NetworkPolicy, V1PodSpec, V1Service, V1StorageClass } from "@kubernetes/client-node";
import { readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { packageRoot } from "../../lib/paths.js";
import { parseCsiConfig } from "../../csi/config.js";
import { parseKeyServiceArgs } from "../../keyservice/config.js";
import { DEFAULTS as NETD_DEFAULTS, NODE_OPTIONS as NETD_NODE_OPTIONS, parseCommand as parseNetdCommand } from "../../netd/config.js";
import { container, splitImage } from "./pod-runner.js";
import { NAMESPACE, OVERLAYS, find, kubectl, manifestsDir, parseYamlObjects, render, type KubeObject, type Overlay } from "./kube.js";

// The manifests as an admin gets them: every overlay rendered by kubectl's kustomize, accepted
// object by object by a real API server (server-side dry run, strict field validation, the
// CRDs of the snapshot and cert-manager APIs installed), and read for the properties the
// design depends on.

const rendered = new Map<Overlay, KubeObject[]>();
const objects = (overlay: Overlay) => rendered.get(overlay) ?? [];
const podSpec = (o: V1DaemonSet | V1Deployment): V1PodSpec => {
  const spec = o.spec?.template.spec;
  if (!spec) throw new Error(`${o.metadata?.name} has no pod template`);
  return spec;
};

beforeAll(async () => {
  for (const overlay of OVERLAYS) rendered.set(overlay, await render(overlay));
});

describe("server-side dry run of every overlay", () => {
  beforeAll(async () => {
    // A dry run does not create the namespace, and the namespaced objects need it to exist.
    await kubectl(["apply", "-f", join(manifestsDir(), "base/namespace.yaml")]);
  });

  for (const overlay of OVERLAYS) {
    it(`accepts every object of ${overlay}`, async () => {
      const out = await kubectl(["apply", "--dry-run=server", "-k", join(manifestsDir(), overlay)]);
      const lines = out.stdout.trim().split("\n");
      expect(out.stderr).not.toMatch(/warning/i);
      for (const o of objects(overlay)) {
        const name = `${o.kind.toLowerCase()}.${groupOf(o.apiVersion)}/${o.metadata.name}`.replace("./", "/");
        expect(lines.find((l) => l.startsWith(`${name} `)), `${name} in:\n${out.stdout}`).toMatch(/\(server dry run\)$/);
      }
      expect(lines).toHaveLength(objects(overlay).length);
    });
  }

  it("keeps the key service within the restricted Pod Security profile (a netd pod is refused there)", async () => {
    const ns = "cloak-deploy-restricted";
    await kubectl(["create", "namespace", ns], { okExitCodes: [1] });
    await kubectl(["label", "--overwrite", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted"]);
    const asPod = (o: V1Deployment | V1DaemonSet, sa: string) =>
      JSON.stringify({ apiVersion: "v1", kind: "Pod", metadata: { name: `${o.metadata?.name}-psa`, namespace: ns }, spec: { ...podSpec(o), serviceAccountName: sa } });
    await kubectl(["create", "serviceaccount", "-n", ns, "cloak-keyservice"], { okExitCodes: [1] });
    await kubectl(["create", "serviceaccount", "-n", ns, "cloak-netd"], { okExitCodes: [1] });
    const keyservice = find<V1Deployment>(objects("overlays/local"), "Deployment", "cloak-keyservice");
    const ok = await kubectl(["create", "--dry-run=server", "-f", "-"], { input: asPod(keyservice, "cloak-keyservice") });
    expect(ok.stderr).not.toMatch(/warning/i);
    const netd = find<V1DaemonSet>(objects("overlays/local"), "DaemonSet", "cloak-netd");
    const refused = await kubectl(["create", "--dry-run=server", "-f", "-"], { input: asPod(netd, "cloak-netd"), okExitCodes: [1] });
    expect(refused.exitCode).toBe(1);
    expect(refused.stderr).toMatch(/violates PodSecurity "restricted.*host namespaces/);
  });
});

describe("what the design depends on", () => {
  const local = () => objects("overlays/local");
  const csiNode = () => find<V1DaemonSet>(local(), "DaemonSet", "cloak-csi-node");
  const netd = () => find<V1DaemonSet>(local(), "DaemonSet", "cloak-netd");
  const keyservice = () => find<V1Deployment>(local(), "Deployment", "cloak-keyservice");

  it("pins real sidecar images, the build module's versions for the three the tests run", () => {
    const goMod = readFileSync(join(packageRoot(), "test/deploy/sidecars/go.mod"), "utf8");
    const required = (module: string) => new RegExp(`^\\s*${module.replace(/[./]/g, "\\$&")} (v\\S+)`, "m").exec(goMod)?.[1];
    const images = new Map(podSpec(csiNode()).containers.map((c) => splitImage(c.image ?? "")));
    expect(images.get("registry.k8s.io/sig-storage/csi-provisioner")).toBe(required("github.com/kubernetes-csi/external-provisioner/v6"));
    expect(images.get("registry.k8s.io/sig-storage/csi-resizer")).toBe(required("github.com/kubernetes-csi/external-resizer/v2"));
    expect(images.get("registry.k8s.io/sig-storage/csi-snapshotter")).toBe(required("github.com/kubernetes-csi/external-snapshotter/v8"));
    for (const [repo, tag] of images) {
      if (repo.startsWith("registry.k8s.io/")) expect(tag).toMatch(/^v\d+\.\d+\.\d+$/);
    }
    // No node-driver-registrar and no livenessprobe: cloak registers itself and serves its own health.
    expect([...images.keys()].sort()).toEqual([
      "cloak.invalid/cloak",
      "registry.k8s.io/sig-storage/csi-provisioner",
      "registry.k8s.io/sig-storage/csi-resizer",
      "registry.k8s.io/sig-storage/csi-snapshotter",
    ]);
  });

  it("mounts every Secret with mode 0400", () => {
    for (const overlay of OVERLAYS) {
      for (const o of objects(overlay).filter((x) => x.kind === "DaemonSet" || x.kind === "Deployment")) {
        for (const v of podSpec(o as V1DaemonSet).volumes ?? []) {
          if (v.secret) expect(v.secret.defaultMode, `${overlay} ${o.metadata.name} volume ${v.name}`).toBe(0o400);
        }
      }
    }
  });

  it("gives the arguments the plugin, key service and netd parse with their own parsers", () => {
    const env = { NODE_NAME: "n1" };
    const args = (spec: V1PodSpec, name: string) => (container(spec, name).args ?? []).map((a) => a.replace("$(NODE_NAME)", "n1"));
    const [csiCmd, ...csiArgs] = args(podSpec(csiNode()), "cloak-csi");
    expect(csiCmd).toBe("csi");
    const csi = parseCsiConfig(csiArgs, env);
    expect(csi).toMatchObject({ nodeId: "n1", services: ["controller", "node"], driverName: "csi.cloak.dev", keySource: { kind: "keyservice" }, keyLineage: "kubernetes" });
    const [ksCmd, ...ksArgs] = args(podSpec(keyservice()), "keyservice");
    expect(ksCmd).toBe("keyservice");
    const ks = parseKeyServiceArgs(ksArgs);
    // The plugin's projected token is for the service's audience, and the service authorises by
    // the plugin's service account and the driver's volumes.
    expect(ks.authz).toMatchObject({ mode: "kubernetes", nodeServiceAccount: `${NAMESPACE}/${podSpec(csiNode()).serviceAccountName}`, drivers: ["csi.cloak.dev"] });
    const tokenVolume = podSpec(csiNode()).volumes?.find((v) => v.name === "keyservice-token");
    const projected = tokenVolume?.projected?.sources?.[0]?.serviceAccountToken;
    expect(projected).toEqual({ audience: ks.authz.audience, expirationSeconds: 600, path: "token" });
    const tokenMount = container(podSpec(csiNode()), "cloak-csi").volumeMounts?.find((m) => m.name === "keyservice-token");
    expect(csi.keySource.kind === "keyservice" ? csi.keySource.tokenFile : undefined).toBe(`${tokenMount?.mountPath}/${projected?.path}`);
    expect(podSpec(keyservice()).automountServiceAccountToken).toBe(true);
    const [netdCmd, ...netdArgs] = args(podSpec(netd()), "netd");
    expect(netdCmd).toBe("netd");
    // Strict by default, serving on the node's address (status.hostIP), never on 0.0.0.0.
    expect(parseNetdCommand(netdArgs, { ...env, NODE_IP: "192.0.2.11" })).toMatchObject({ command: "run", config: { nodeName: "n1", strict: true, metricsAddress: "192.0.2.11:9478" } });

    // The plugin reaches the key service's Service, and the name it checks is in the
    // certificate the cert-manager overlay issues (`cloak keys init` issues the same names).
    const service = find<V1Service>(local(), "Service", "cloak-keyservice");
    const target = csi.keySource.kind === "keyservice" ? csi.keySource : undefined;
    expect(target?.target).toBe(`cloak-keyservice.${NAMESPACE}.svc:${service.spec?.ports?.find((p) => p.name === "grpc")?.port}`);
    expect(ks.listen).toMatchObject({ kind: "tcp", port: 9000 });
    const serverCert = find<{ spec: { dnsNames: string[]; secretName: string } }>(objects("overlays/cert-manager"), "Certificate", "cloak-keyservice");
    expect(serverCert.spec.dnsNames).toContain(target?.serverName);
    // The node plugin's client certificate names the identity the key service allows.
    const clientCert = find<{ spec: { uris: string[]; secretName: string } }>(objects("overlays/cert-manager"), "Certificate", "cloak-csi-node-keyservice");
    expect(ks.allow).toEqual(clientCert.spec.uris);
    const secretOf = (spec: V1PodSpec, volume: string) => spec.volumes?.find((v) => v.name === volume)?.secret?.secretName;
    expect(secretOf(podSpec(keyservice()), "tls")).toBe(serverCert.spec.secretName);
    expect(secretOf(podSpec(csiNode()), "keyservice-client")).toBe(clientCert.spec.secretName);
  });

  it("runs netd on every node with the host's network, NET_ADMIN only, and its health as readiness", () => {
    const spec = podSpec(netd());
    const c = container(spec, "netd");
    expect(spec.hostNetwork).toBe(true);
    expect(spec.tolerations).toEqual([{ operator: "Exists" }]);
    expect(c.securityContext?.privileged).toBeFalsy();
    expect(c.securityContext?.capabilities).toEqual({ drop: ["ALL"], add: ["NET_ADMIN"] });
    expect(c.env).toContainEqual({ name: "NODE_NAME", valueFrom: { fieldRef: { fieldPath: "spec.nodeName" } } });
    expect(c.env).toContainEqual({ name: "NODE_IP", valueFrom: { fieldRef: { fieldPath: "status.hostIP" } } });
    // The V8 flags bench-netd measured netd's memory with (netd/config.ts).
    expect(c.env).toContainEqual({ name: "NODE_OPTIONS", value: NETD_NODE_OPTIONS });
    const metricsPort = NETD_DEFAULTS.metricsPort;
    expect(c.ports).toContainEqual({ name: "metrics", containerPort: metricsPort });
    expect(c.readinessProbe?.httpGet).toEqual({ path: "/healthz", port: "metrics" });
    const state = spec.volumes?.find((v) => v.name === "state");
    expect(state?.hostPath?.path).toBe(NETD_DEFAULTS.stateDir);
    expect(find<V1Service>(local(), "Service", "cloak-netd-metrics").spec?.ports?.[0]?.port).toBe(metricsPort);
  });

  it("runs the node plugin privileged, with kubelet's directory shared both ways, and the local source's sidecars in node-deployment mode", () => {
    const spec = podSpec(csiNode());
    const plugin = container(spec, "cloak-csi");
    expect(plugin.securityContext?.privileged).toBe(true);
    expect(plugin.volumeMounts).toContainEqual({ name: "kubelet-dir", mountPath: "/var/lib/kubelet", mountPropagation: "Bidirectional" });
    expect(spec.hostNetwork).toBeFalsy();
    const names = spec.containers.map((c) => c.name).sort();
    expect(names).toEqual(["cloak-csi", "csi-provisioner", "csi-resizer", "csi-snapshotter"]);
    expect(container(spec, "csi-provisioner").args).toContain("--node-deployment=true");
    expect(container(spec, "csi-snapshotter").args).toContain("--node-deployment=true");
    for (const c of spec.containers.filter((x) => x.name !== "cloak-csi")) {
      expect(c.securityContext?.privileged, c.name).toBeFalsy();
      expect(c.securityContext?.capabilities?.drop, c.name).toEqual(["ALL"]);
    }
    // Without the local overlay, nothing in the pod talks to the API server: no token.
    const base = podSpec(find<V1DaemonSet>(objects("base"), "DaemonSet", "cloak-csi-node"));
    expect(base.automountServiceAccountToken).toBe(false);
    expect(base.containers.map((c) => c.name)).toEqual(["cloak-csi"]);
    expect(spec.automountServiceAccountToken).toBe(true);
  });

  it("registers the node plugin with kubelet itself, and probes its own health port", () => {
    const spec = podSpec(csiNode());
    const plugin = container(spec, "cloak-csi");
    const config = parseCsiConfig((plugin.args ?? []).slice(1), { NODE_NAME: "n1" });
    const mountOf = (volume: string) => plugin.volumeMounts?.find((m) => m.name === volume)?.mountPath;
    const hostPathOf = (volume: string) => spec.volumes?.find((v) => v.name === volume)?.hostPath?.path;

    // The registration socket goes where kubelet's plugin watcher looks.
    expect(config.registration?.dir).toBe(mountOf("registration-dir"));
    expect(hostPathOf("registration-dir")).toBe("/var/lib/kubelet/plugins_registry");
    // kubelet is told the CSI socket's path on the node: the socket-dir hostPath, the file the plugin serves.
    const endpoint = config.endpoint.kind === "unix" ? config.endpoint.path : "";
    expect(endpoint.startsWith(`${mountOf("socket-dir")}/`)).toBe(true);
    expect(config.registration?.kubeletEndpoint).toBe(`${hostPathOf("socket-dir")}${endpoint.slice((mountOf("socket-dir") ?? "").length)}`);
    expect(config.registration?.kubeletEndpoint).toBe(`/var/lib/kubelet/plugins/${config.driverName}/csi.sock`);

    // Liveness and readiness on the port the plugin listens on, in the pod's own network namespace.
    expect(spec.hostNetwork).toBeFalsy();
    expect(config.healthListen).toEqual({ kind: "tcp", host: "0.0.0.0", port: 9808 });
    expect(plugin.ports).toContainEqual({ name: "healthz", containerPort: config.healthListen?.port });
    expect(plugin.livenessProbe?.httpGet).toEqual({ path: "/healthz", port: "healthz" });
    // Liveness waits for the first answer (a slow start is not a dead plugin).
    expect(plugin.startupProbe?.httpGet).toEqual({ path: "/healthz", port: "healthz" });
    expect((plugin.startupProbe?.periodSeconds ?? 10) * (plugin.startupProbe?.failureThreshold ?? 3)).toBeGreaterThanOrEqual(300);
    expect(plugin.readinessProbe?.httpGet).toEqual({ path: "/readyz", port: "healthz" });
    // kubelet gives up on a probe after timeoutSeconds; the plugin's own checks answer within 4 s.
    expect(plugin.livenessProbe?.timeoutSeconds).toBeGreaterThanOrEqual(5);
    const metrics = find<V1Service>(local(), "Service", "cloak-csi-node-metrics");
    expect(metrics.spec?.selector).toEqual(csiNode().spec?.selector.matchLabels);
    expect(metrics.spec?.ports).toEqual([{ name: "metrics", port: 9808, targetPort: "healthz" }]);
  });

  it("declares the driver and classes as the disk source needs", () => {
    const driver = find<V1CSIDriver>(local(), "CSIDriver", "csi.cloak.dev");
    expect(driver.spec).toEqual({
      attachRequired: false,
      podInfoOnMount: true,
      fsGroupPolicy: "File",
      volumeLifecycleModes: ["Persistent"],
      storageCapacity: true,
    });
    const plain = find<V1StorageClass>(local(), "StorageClass", "cloak-encrypted");
    expect(plain).toMatchObject({ provisioner: "csi.cloak.dev", volumeBindingMode: "WaitForFirstConsumer", allowVolumeExpansion: true, reclaimPolicy: "Delete" });
    // Exactly: external-provisioner refuses a class with both fsType and csi.storage.k8s.io/fstype.
    expect(plain.parameters).toEqual({ fsType: "ext4", integrity: "false" });
    const integrity = find<V1StorageClass>(local(), "StorageClass", "cloak-encrypted-integrity");
    expect(integrity).toMatchObject({ volumeBindingMode: "WaitForFirstConsumer", allowVolumeExpansion: false });
    expect(integrity.parameters).toEqual({ fsType: "ext4", integrity: "true" });
    expect(find<{ driver: string }>(local(), "VolumeSnapshotClass", "cloak-snapshots").driver).toBe("csi.cloak.dev");
  });

  it("admits to the key service only the node plugin's pods, keeps two replicas apart and one always up", () => {
    const policy = find<V1NetworkPolicy>(local(), "NetworkPolicy", "cloak-keyservice");
    expect(policy.spec?.podSelector?.matchLabels).toEqual(keyservice().spec?.selector.matchLabels);
    expect(policy.spec?.ingress).toEqual([{ from: [{ podSelector: { matchLabels: csiNode().spec?.selector.matchLabels } }], ports: [{ protocol: "TCP", port: 9000 }] }]);
    expect(keyservice().spec?.replicas).toBe(2);
    expect(podSpec(keyservice()).affinity?.podAntiAffinity).toBeDefined();
    expect(find<{ spec: { minAvailable: number } }>(local(), "PodDisruptionBudget", "cloak-keyservice").spec.minAvailable).toBe(1);
  });

  it("labels the namespace for Pod Security", () => {
    const ns = find(local(), "Namespace", NAMESPACE);
    expect(ns.metadata.labels?.["pod-security.kubernetes.io/enforce"]).toBe("privileged");
  });

  it("lets an admin's overlay replace the cloak image everywhere", async () => {
    const { mkdtemp, writeFile, rm } = await import("node:fs/promises");
    const { tmpdir } = await import("node:os");
    const dir = await mkdtemp(join(tmpdir(), "cloak-deploy-overlay-"));
    try {
      await writeFile(
        join(dir, "kustomization.yaml"),
        [
          "resources:",
          // kustomize takes only relative paths to other kustomizations.
          `  - ${relative(dir, join(manifestsDir(), "overlays/local"))}`,
          "images:",
          "  - name: cloak.invalid/cloak",
          "    newName: registry.example.com/cloak",
          "    newTag: 0.1.0",
          "",
        ].join("\n"),
      );
      const out = await kubectl(["kustomize", "--load-restrictor=LoadRestrictionsNone", dir]);
      const images = parseYamlObjects(out.stdout)
        .filter((o) => o.kind === "DaemonSet" || o.kind === "Deployment")
        .flatMap((o) => podSpec(o as V1DaemonSet).containers.map((c) => c.image ?? ""));
      expect(images.filter((i) => i.includes("cloak"))).toEqual(new Array(3).fill("registry.example.com/cloak:0.1.0"));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

function groupOf(apiVersion: string): string {
  return apiVersion.includes("/") ? (apiVersion.split("/")[0] ?? "") : "";
}
