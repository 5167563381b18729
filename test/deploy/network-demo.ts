/**
 * `make demo-network` (demo/network.sh): the network half of cloak, shown on this machine.
 *
 * Two "nodes" in network namespaces on one bridge, each with a "pod" behind it, a real
 * kube-apiserver in a third namespace, and netd on each node — running as the manifests' netd
 * service account (a token bound to a Pod on that node), under the manifests' RBAC and
 * admission policy. A message goes from the pod on n1 to the pod on n2, once without netd and
 * once with it, while tcpdump records the bridge: the first capture shows the message, the
 * second only WireGuard. Everything it creates is named cloak-demo-* and removed at the end,
 * also on Ctrl-C or failure.
 */
import { CoreV1Api, type V1DaemonSet, type V1Pod } from "@kubernetes/client-node";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stringify } from "yaml";
import { createRunner, type Runner } from "../../lib/exec.js";
import { createLogger } from "../../lib/log.js";
import { packageRoot } from "../../lib/paths.js";
import { ensureBinaries, startApiServer, type ApiServer } from "../apiserver/apiserver.js";
import type { Daemon } from "../netns/daemon.js";
import { NetdCluster, WG_PORT } from "../netns/netd-cluster.js";
import { createTestbed, removeLeftovers, type Testbed, type TestNode } from "../netns/testbed.js";
import { httpGet, send, startCapture, startEcho, stopSenders } from "../netns/traffic.js";
import { parseYamlObjects, type KubeObject } from "./objects.js";
import { serviceAccountToken, writeTokenKubeconfig } from "./tokens.js";

const PREFIX = "cloak-demo-";
const MESSAGE = "CLOAK-DEMO: meet at the old bridge at noon";
const UDP_PORT = 7777;
const NAMESPACE = "cloak-system";

/** netd's interfaces here: their own names, since wireguard-go's sockets are machine-wide. */
class DemoCluster extends NetdCluster {
  override iface(node: TestNode): string {
    return `cdemo-${node.name}`;
  }
}

const bold = (s: string) => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);
const step = (n: number, s: string) => console.log(`\n${bold(`[${n}] ${s}`)}`);
const indent = (s: string) => s.trimEnd().split("\n").map((l) => `    ${l}`).join("\n");

async function main(): Promise<number> {
  const started = Date.now();
  const run = createRunner({ logger: createLogger({ component: "demo", level: "warn" }) });
  const cleanups: Array<() => Promise<void>> = [];
  let cleaning = false;
  const cleanup = async () => {
    if (cleaning) return;
    cleaning = true;
    for (const c of cleanups.reverse()) await c().catch((err: unknown) => console.error(`cleanup: ${(err as Error).message}`));
  };
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    process.once(sig, () => {
      console.log(`\n${sig}: cleaning up`);
      void cleanup().then(() => process.exit(130));
    });
  }

  try {
    await removeLeftovers(PREFIX, run);
    const dir = await mkdtemp(join(tmpdir(), PREFIX));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));

    step(1, "Two nodes, each with a pod, on one bridge; a Kubernetes API server beside them");
    const binaries = await ensureBinaries(run, { kubectl: true });
    const tb: Testbed = await createTestbed({ nodes: 2, api: true, prefix: PREFIX, runner: run });
    cleanups.push(() => tb.destroy());
    const [n1, n2] = tb.nodes as [TestNode, TestNode];
    for (const n of tb.nodes) console.log(`    node ${n.name}: ${n.underlay4} (namespace ${n.ns})   pod ${n.podIP4} (pod CIDR ${n.podCIDR4})`);
    const api: ApiServer = await startApiServer({ dir: join(dir, "api"), netns: tb.apiNs ?? "", address: tb.apiAddress4, runner: run });
    cleanups.push(() => api.stop());
    console.log(`    kube-apiserver ${api.url} (v1.34, RBAC on)`);

    // The manifests' netd identity: service account, role, binding and admission policy.
    const rendered = parseYamlObjects((await run({ file: binaries.kubectl, args: ["kustomize", join(packageRoot(), "manifests/base")] })).stdout);
    const netdObjects = rendered.filter((o) => isNetdIdentity(o));
    await run({
      file: binaries.kubectl,
      args: [`--kubeconfig=${api.kubeconfigPath}`, "apply", "--server-side", "-f", "-"],
      input: netdObjects.map((o) => `---\n${stringify(o)}`).join(""),
    });
    console.log(`    applied from manifests/base: ${netdObjects.map((o) => `${o.kind}/${o.metadata.name}`).join(", ")}`);

    const cluster = new DemoCluster({ testbed: tb, api, dir: join(dir, "netd"), implementation: "userspace" });
    await mkdir(cluster.o.dir, { recursive: true });
    cleanups.push(() => cluster.stopAll());
    cleanups.push(async () => {
      for (const n of tb.nodes) await rm(`/var/run/wireguard/${cluster.iface(n)}.sock`, { force: true });
    });
    const netdTemplate = (rendered.find((o) => o.kind === "DaemonSet" && o.metadata.name === "cloak-netd") as V1DaemonSet | undefined)?.spec?.template;
    const core = api.adminClient.makeApiClient(CoreV1Api);
    const kubeconfigs = new Map<string, string>();
    for (const n of tb.nodes) {
      await cluster.createNode(n);
      // The pod kubelet would run there, and the token kubelet would mount in it.
      const pod: V1Pod = await core.createNamespacedPod({
        namespace: NAMESPACE,
        body: { metadata: { name: `cloak-netd-${n.name}` }, spec: { ...netdTemplate?.spec, nodeName: n.name } as V1Pod["spec"] },
      });
      const token = await serviceAccountToken(core, { namespace: NAMESPACE, serviceAccount: "cloak-netd", pod });
      kubeconfigs.set(n.name, await writeTokenKubeconfig(join(dir, `netd-${n.name}.kubeconfig`), { server: api.url, caFile: api.caFile, token }));
    }
    const echo = await startEcho(n2.podNs, "udp", UDP_PORT, dir);
    cleanups.push(async () => void (await echo.stop("SIGKILL")));
    cleanups.push(() => stopSenders());

    step(2, `Without netd: pod on n1 sends "${MESSAGE}" to the pod on n2`);
    const plain = await sendAndCapture(tb, run, dir, "plain", n1, n2);
    console.log(`    delivered: ${plain.delivered ? "yes (echoed back)" : "NO"}`);
    console.log(`    what tcpdump on the bridge sees (the message, readable):`);
    console.log(indent(plain.readable.slice(0, 4).join("\n") || "(nothing)"));

    step(3, "Start netd on both nodes (as the manifests' netd service account)");
    const netds: Daemon[] = [];
    for (const n of tb.nodes) {
      // The per-node pod token; given last, it wins over the cluster's default kubeconfig.
      netds.push(await cluster.startNetd(n, [`--kubeconfig=${kubeconfigs.get(n.name) ?? ""}`]));
    }
    await cluster.waitForPeers(n1, { n2: [n2.podCIDR4, n2.podCIDR6] });
    await cluster.waitForPeers(n2, { n1: [n1.podCIDR4, n1.podCIDR6] });
    for (const n of tb.nodes) {
      const node = await cluster.readNode(n.name);
      console.log(`    ${n.name} published netd.cloak.dev/public-key=${node.metadata?.annotations?.["netd.cloak.dev/public-key"]}`);
    }

    step(4, "With netd: the same message, the same capture");
    const sealed = await sendAndCapture(tb, run, dir, "encrypted", n1, n2);
    console.log(`    delivered: ${sealed.delivered ? "yes (echoed back)" : "NO"}`);
    console.log(`    what tcpdump on the bridge sees (${sealed.nodePackets.length} packets between the nodes):`);
    console.log(indent(sealed.nodePackets.slice(0, 6).map((l) => l.replace(/^\S+ /, "")).join("\n")));
    const notWireguard = sealed.nodePackets.filter((l) => !new RegExp(`\\.${WG_PORT}: UDP, length \\d+$`).test(l));
    console.log(`    packets that are not WireGuard (UDP port ${WG_PORT}): ${notWireguard.length}`);
    console.log(`    bytes of the message anywhere in the capture: ${sealed.containsMessage ? "FOUND" : "none"}`);

    step(5, "netd's own view on n1: cloak netd status, and its metrics");
    const status = await tb.exec(n1.ns, [process.execPath, join(packageRoot(), "dist/cmd/cloak.js"), "netd", "status"]);
    console.log(indent(status.stdout));
    const metrics = await httpGet(tb, n1.ns, "http://127.0.0.1:9478/metrics");
    console.log("    and its metrics (http://<node>:9478/metrics):");
    console.log(indent(metrics.body.split("\n").filter((l) => /^netd_(peers_configured|peers_connected|peer_sent_bytes|peer_received_bytes)\b/.test(l)).join("\n")));

    step(6, "The admission policy: netd on n1 tries to replace n2's key");
    const attempt = await run({
      file: binaries.kubectl,
      args: [`--kubeconfig=${kubeconfigs.get(n1.name) ?? ""}`, "--server", api.hostUrl, "annotate", "--overwrite", "node", n2.name, "netd.cloak.dev/public-key=stolen"],
      okExitCodes: [1],
    });
    console.log(indent(attempt.exitCode === 0 ? "ALLOWED (unexpected)" : attempt.stderr));

    const ok = plain.delivered && plain.containsMessage && sealed.delivered && !sealed.containsMessage && notWireguard.length === 0 && sealed.nodePackets.length > 0 && attempt.exitCode !== 0;
    console.log(`\n${bold(ok ? "Result: pod-to-pod traffic crossed the wire encrypted; only WireGuard was seen." : "Result: UNEXPECTED — see above.")}`);
    console.log(`(took ${Math.round((Date.now() - started) / 1000)} s; cleaning up)`);
    return ok ? 0 : 1;
  } finally {
    await cleanup();
  }
}

function isNetdIdentity(o: KubeObject): boolean {
  if (o.kind === "Namespace") return true;
  if (o.kind === "ValidatingAdmissionPolicy" || o.kind === "ValidatingAdmissionPolicyBinding") return true;
  return ["ServiceAccount", "ClusterRole", "ClusterRoleBinding"].includes(o.kind) && o.metadata.name === "cloak-netd";
}

interface Captured {
  readonly delivered: boolean;
  readonly containsMessage: boolean;
  /** tcpdump lines of IP packets between the nodes (not the API server's). */
  readonly nodePackets: readonly string[];
  /** ASCII dump lines that show the message. */
  readonly readable: readonly string[];
}

async function sendAndCapture(tb: Testbed, run: Runner, dir: string, name: string, from: TestNode, to: TestNode): Promise<Captured> {
  const file = join(dir, `${name}.pcap`);
  const cap = await startCapture(tb, tb.underlayNs, "br0", file, dir);
  const delivered = await send(tb, from.podNs, to.podIP4, UDP_PORT, MESSAGE);
  const { raw, text } = await cap.stop();
  const ascii = (await run({ file: "ip", args: ["netns", "exec", tb.underlayNs, "tcpdump", "-r", file, "-n", "-A"], okExitCodes: [1] })).stdout;
  const nodePackets = text
    .split("\n")
    .filter((l) => / IP6? /.test(l) && !l.includes(tb.apiAddress4) && !l.includes(tb.apiAddress6))
    .filter((l) => !/ICMP6, (neighbor|router)/.test(l));
  // tcpdump -A: a header line per packet, then its bytes as ASCII; keep the packets that show
  // the message, header first.
  const readable: string[] = [];
  let header = "";
  for (const line of ascii.split("\n")) {
    if (/^\S+ IP6? /.test(line)) header = line.replace(/^\S+ /, "");
    else if (line.includes("CLOAK-DEMO")) readable.push(header, `  payload: ...${line.slice(line.indexOf("CLOAK-DEMO"))}`);
  }
  return { delivered, containsMessage: raw.includes(Buffer.from(MESSAGE)), nodePackets, readable };
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    console.error(`demo failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    process.exitCode = 1;
  },
);
