import { CoreV1Api, type V1Node } from "@kubernetes/client-node";
import { existsSync } from "node:fs";
import { copyFile, mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { createRunner, type Runner } from "../../lib/exec.js";
import { createLogger } from "../../lib/log.js";
import { packageRoot } from "../../lib/paths.js";
import { startApiServer, type ApiServer } from "../apiserver/apiserver.js";
import { ensureCa, ensureLeaf } from "../apiserver/certs.js";
import { Daemon } from "../netns/daemon.js";
import { createTestbed, nodeAddresses, type Testbed } from "../netns/testbed.js";
import { cniConfig, containerdConfig, kubeletConfig, kubeProxyConfig, type NodeSpec } from "./node-config.js";

/** Every node's pod range is inside this one (test/netns/testbed.ts's address plan). */
const POD_RANGE = "198.51.100.0/24";

/**
 * A real Kubernetes cluster on this machine: the control plane (etcd, kube-apiserver with the
 * Node authorizer and NodeRestriction, kube-controller-manager, kube-scheduler) natively in the
 * testbed's "api" namespace, and each node a VM-tier guest (test/vm/run.sh) running containerd,
 * runc, the bridge CNI and kubelet (test/cluster/node.sh), on the testbed's underlay bridge
 * through a tap device. Nodes are guests because kubelet takes over cgroups and global sysctls
 * (never this machine's) and cloak needs dm-crypt and WireGuard, which a guest kernel has.
 *
 *   underlay 192.0.2.0/24: api 192.0.2.100 (API server :6443), node i 192.0.2.1i (kubelet :10250)
 *   pods: node i 198.51.100.(64·(i-1))/26, on a bridge in the guest; routes to it from "api"
 *
 * Everything is stopped and removed by stop(), also after a failed start; a crashed run's
 * namespaces (and the guests inside them) are removed by the next start.
 */

export interface ClusterOptions {
  /** Scratch directory: certificates, kubeconfigs, every daemon's log. */
  readonly dir: string;
  /** How many nodes (guests): n1, n2, ... */
  readonly nodes: number;
  /** vCPUs and MiB of RAM per guest. */
  readonly cpus?: number;
  readonly memoryMiB?: number;
  readonly runner?: Runner;
}

export interface ClusterNode extends NodeSpec {
  /** kubelet's credentials (system:node:<name>), for checks of what a node may do. */
  readonly kubeconfig: string;
}

export interface Cluster {
  readonly api: ApiServer;
  readonly testbed: Testbed;
  readonly nodes: readonly ClusterNode[];
  readonly kubectl: string;
  /** Every log this cluster writes, for a failing test to show. */
  readonly logs: Readonly<Record<string, string>>;
  stop(): Promise<void>;
}

/** NAME=PATH lines a build script prints with --print-paths. */
async function printedPaths(runner: Runner, script: string): Promise<Record<string, string>> {
  const out = await runner({ file: join(packageRoot(), script), args: ["--print-paths"] });
  return Object.fromEntries(out.stdout.trim().split("\n").map((l) => l.split("=", 2) as [string, string]));
}

/** What the cluster runs, built beforehand by `make cluster-deps`; a missing one fails loudly. */
async function clusterBinaries(runner: Runner): Promise<Record<string, string>> {
  const image = (await runner({ file: join(packageRoot(), "scripts/image/build.sh"), args: ["--print-path"] })).stdout.trim();
  const paths: Record<string, string> = {
    CLOAK_IMAGE: image,
    ...(await printedPaths(runner, "test/apiserver/build.sh")),
    ...(await printedPaths(runner, "test/cluster/runtime/build.sh")),
    ...(await printedPaths(runner, "test/cluster/images.sh")),
  };
  // The guests' kernel: prepared here, because inside the testbed's namespaces there is no network
  // to download it with (a no-op when cached).
  await runner({ file: join(packageRoot(), "test/vm/run.sh"), args: ["--prepare"], env: { CLOAK_VM: "force" }, timeoutMs: 15 * 60_000 });
  const wanted = ["KUBECTL", "KUBE_CONTROLLER_MANAGER", "KUBE_SCHEDULER", "KUBELET", "KUBE_PROXY", "CONTAINERD_BIN", "RUNC", "CNI_BIN", "PAUSE_IMAGE", "BUSYBOX_IMAGE", "SIDECAR_IMAGES", "CLOAK_IMAGE"];
  for (const name of wanted) {
    for (const path of (paths[name] ?? "").split(" ")) {
      if (!path || !existsSync(path)) throw new Error(`test/cluster: ${name} is not built (${path || "unknown"}): run \`make cluster-deps\``);
    }
  }
  return paths;
}

export async function startCluster(o: ClusterOptions): Promise<Cluster> {
  const runner = o.runner ?? createRunner({ logger: createLogger({ component: "cluster", level: "warn" }) });
  const bin = await clusterBinaries(runner);
  const need = (name: string) => bin[name] ?? "";
  await mkdir(o.dir, { recursive: true });
  const logs: Record<string, string> = {};
  const daemons: Daemon[] = [];
  let testbed: Testbed | undefined;
  let api: ApiServer | undefined;

  const stop = async () => {
    // Guests first (they hold the taps), then the control plane, then the namespaces.
    for (const d of daemons.reverse()) await d.stop("SIGTERM", 30_000).catch(() => undefined);
    await api?.stop().catch(() => undefined);
    await testbed?.destroy();
  };
  const daemon = (name: string, argv: string[], extra: { netns?: string; env?: Record<string, string> } = {}) => {
    logs[name] = join(o.dir, `${name}.log`);
    const d = new Daemon({ name, argv, logFile: logs[name], ...extra });
    daemons.push(d);
    return d;
  };

  try {
    testbed = await createTestbed({ nodes: 0, api: true, prefix: "cloak-cl-", runner });
    const apiNs = testbed.apiNs ?? "";
    const apiDir = join(o.dir, "api");
    const pki = join(apiDir, "pki");
    await mkdir(pki, { recursive: true });
    // The API server's own client certificate for kubelets (logs, exec, port-forward).
    const ca = await ensureCa(runner, pki);
    const kubeletClient = await ensureLeaf(runner, pki, ca, {
      name: "apiserver-kubelet-client",
      commonName: "kube-apiserver-kubelet-client",
      organizations: ["system:masters"],
      usage: "client",
    });
    api = await startApiServer({
      dir: apiDir,
      netns: apiNs,
      address: testbed.apiAddress4,
      runner,
      authorizationModes: ["Node", "RBAC"],
      extraArgs: [
        "--enable-admission-plugins=NodeRestriction",
        `--kubelet-client-certificate=${kubeletClient.cert}`,
        `--kubelet-client-key=${kubeletClient.key}`,
        "--kubelet-preferred-address-types=InternalIP",
      ],
    });
    logs["kube-apiserver"] = join(apiDir, "kube-apiserver.log");
    const server = api.url;

    const kcmKubeconfig = await api.userKubeconfig({ user: "system:kube-controller-manager", server });
    daemon(
      "kube-controller-manager",
      [
        need("KUBE_CONTROLLER_MANAGER"),
        `--kubeconfig=${kcmKubeconfig}`,
        `--authentication-kubeconfig=${kcmKubeconfig}`,
        `--authorization-kubeconfig=${kcmKubeconfig}`,
        "--use-service-account-credentials=true",
        `--service-account-private-key-file=${join(pki, "sa.key")}`,
        `--root-ca-file=${api.caFile}`,
        "--leader-elect=false",
        "--secure-port=0",
        // The emulated nodes' heartbeats can be late: do not call them lost too soon.
        "--node-monitor-grace-period=120s",
        "--v=1",
      ],
      { netns: apiNs },
    );
    const schedulerKubeconfig = await api.userKubeconfig({ user: "system:kube-scheduler", server });
    daemon(
      "kube-scheduler",
      [
        need("KUBE_SCHEDULER"),
        `--kubeconfig=${schedulerKubeconfig}`,
        `--authentication-kubeconfig=${schedulerKubeconfig}`,
        `--authorization-kubeconfig=${schedulerKubeconfig}`,
        "--leader-elect=false",
        "--secure-port=0",
        "--v=1",
      ],
      { netns: apiNs },
    );

    // One state disk with every image unpacked, which each guest attaches copy-on-write.
    const disk = join(o.dir, "node-disk.img");
    await runner({
      file: join(packageRoot(), "test/cluster/node-disk.sh"),
      args: ["--out", disk, "--size", "8G", need("PAUSE_IMAGE"), need("BUSYBOX_IMAGE"), ...need("SIDECAR_IMAGES").split(" "), need("CLOAK_IMAGE")],
      env: { CONTAINERD_BIN: need("CONTAINERD_BIN") },
      timeoutMs: 10 * 60_000,
    });

    const core = api.adminClient.makeApiClient(CoreV1Api);
    const nodes: ClusterNode[] = [];
    for (let i = 1; i <= o.nodes; i++) {
      const addr = nodeAddresses(i, testbed.prefix);
      const spec: NodeSpec = { name: addr.name, ip: addr.underlay4, podCIDR: addr.podCIDR4 };
      const nodeDir = join(o.dir, spec.name);
      await mkdir(nodeDir, { recursive: true });
      const kubeconfig = await api.userKubeconfig({ user: `system:node:${spec.name}`, groups: ["system:nodes"], server });
      await copyFile(kubeconfig, join(nodeDir, "kubelet.kubeconfig"));
      await writeFile(join(nodeDir, "kubelet.yaml"), kubeletConfig(spec, { clientCAFile: api.caFile }));
      await writeFile(join(nodeDir, "containerd.toml"), containerdConfig({ runc: need("RUNC"), cniBin: need("CNI_BIN"), pauseImage: need("PAUSE_NAME") }));
      await writeFile(join(nodeDir, "10-bridge.conflist"), cniConfig(spec));
      const proxyKubeconfig = join(nodeDir, "kube-proxy.kubeconfig");
      await copyFile(await api.userKubeconfig({ user: "system:kube-proxy", server }), proxyKubeconfig);
      await writeFile(join(nodeDir, "kube-proxy.yaml"), kubeProxyConfig(spec, { kubeconfig: proxyKubeconfig, clusterCIDR: POD_RANGE }));
      // The Node exists before its kubelet, with its pod range: the range is part of the plan
      // (the CNI file above, the routes below), not whatever an allocator picks first.
      await core.createNode({ body: { metadata: { name: spec.name }, spec: { podCIDR: spec.podCIDR, podCIDRs: [spec.podCIDR] } } });
      await testbed.exec(apiNs, ["ip", "route", "add", spec.podCIDR, "via", spec.ip]);
      const tap = `tap-${spec.name}`;
      await testbed.exec(testbed.underlayNs, ["ip", "tuntap", "add", "dev", tap, "mode", "tap"]);
      await testbed.exec(testbed.underlayNs, ["ip", "link", "set", tap, "master", "br0", "up"]);
      const mac = `52:54:00:c1:00:${(0x10 + i).toString(16)}`;
      daemon(
        spec.name,
        [
          join(packageRoot(), "test/vm/run.sh"),
          "--cpus", String(o.cpus ?? 1),
          "--mem", String(o.memoryMiB ?? 3072),
          "--timeout", "7200",
          "--", join(packageRoot(), "test/cluster/node.sh"),
        ],
        {
          netns: testbed.underlayNs,
          env: {
            CLOAK_VM: "force",
            CLOAK_VM_QEMU_ARGS: [
              `-netdev tap,id=u0,ifname=${tap},script=no,downscript=no -device virtio-net-pci,netdev=u0,mac=${mac}`,
              `-drive file=${disk},format=raw,if=none,id=state,snapshot=on,cache=unsafe -device virtio-blk-pci,drive=state,serial=cloak-node-state`,
            ].join(" "),
            CLOAK_NODE_NAME: spec.name,
            CLOAK_NODE_IP: spec.ip,
            CLOAK_NODE_GATEWAY: testbed.apiAddress4,
            CLOAK_NODE_DIR: nodeDir,
            CLOAK_KUBELET: need("KUBELET"),
            CLOAK_KUBE_PROXY: need("KUBE_PROXY"),
            CLOAK_CONTAINERD_BIN: need("CONTAINERD_BIN"),
            CLOAK_RUNC: need("RUNC"),
            CLOAK_CNI_BIN: need("CNI_BIN"),
          },
        },
      );
      nodes.push({ ...spec, kubeconfig: join(nodeDir, "kubelet.kubeconfig") });
    }
    await waitNodesReady(core, nodes, daemons, 15 * 60_000);
    return { api, testbed, nodes, kubectl: need("KUBECTL"), logs, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

function ready(node: V1Node): boolean {
  return node.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ?? false;
}

async function waitNodesReady(core: CoreV1Api, nodes: readonly ClusterNode[], daemons: readonly Daemon[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const exited = daemons.find((d) => !d.running);
    if (exited) throw new Error(`${exited.o.name} exited (${exited.child.exitCode ?? exited.child.signalCode}) before the nodes were Ready:\n${exited.stdout.slice(-6000)}`);
    const list = await core.listNode();
    const notReady = nodes.filter((n) => !list.items.some((item) => item.metadata?.name === n.name && ready(item)));
    if (notReady.length === 0) return;
    if (Date.now() > deadline) {
      const tails = daemons.filter((d) => notReady.some((n) => n.name === d.o.name)).map((d) => `--- ${d.o.name}\n${d.stdout.slice(-4000)}`);
      throw new Error(`nodes not Ready after ${timeoutMs / 1000} s: ${notReady.map((n) => n.name).join(", ")}\n${tails.join("\n")}`);
    }
    await new Promise((r) => setTimeout(r, 2_000));
  }
}
