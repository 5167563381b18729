import { randomBytes } from "node:crypto";
import { readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Daemon } from "../netns/daemon.js";
import { daemonPodOn, deployCloak, NAMESPACE } from "./deploy.js";
import { cluster, hostRun, kubectl, showLogsOnFailure, waitFor, waitForPod } from "./kube.js";

/**
 * Pod to pod across nodes through netd's DaemonSet on the guests' kernel WireGuard, with the
 * wire watched where nobody in the cluster can hide anything: tcpdump on the host side of n1's
 * tap. Every frame between the nodes must be WireGuard (UDP to netd's port), no pod address may
 * cross between pods in clear, and the message never crosses in clear. Then netd's pod on n1 is
 * deleted while a datagram stream flows: the kernel tunnel outlives the agent, nothing is lost.
 */

const WIREGUARD_PORT = 51872;
const TCP_PORT = 8080;
const UDP_PORT = 8081;
const STREAM_PORT = 8082;

showLogsOnFailure();

/** A pod on `node` running a Node.js program in cloak's image (Debian's busybox has no UDP nc). */
function nodePod(name: string, node: string, program: string): string {
  return JSON.stringify({
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, namespace: "default" },
    spec: {
      nodeName: node,
      terminationGracePeriodSeconds: 1,
      containers: [{ name: "main", image: "cloak.invalid/cloak:0.1.0", command: ["node", "-e", program] }],
    },
  });
}

/** Prints each TCP connection's data and each datagram, with the port it came to. */
const SERVER = `
const net = require("node:net"), dgram = require("node:dgram");
net.createServer((c) => { let d = ""; c.on("data", (b) => (d += b)); c.on("end", () => console.log("tcp " + d.trim())); c.on("error", () => {}); }).listen(${TCP_PORT});
for (const port of [${UDP_PORT}, ${STREAM_PORT}]) dgram.createSocket("udp4").on("message", (m) => console.log("udp" + port + " " + m)).bind(port);
console.log("listening");`;

/** Every 2 s: MESSAGE over TCP and over UDP to the server. */
const client = (server: string, message: string) => `
const net = require("node:net"), dgram = require("node:dgram");
const udp = dgram.createSocket("udp4");
setInterval(() => {
  net.connect(${TCP_PORT}, "${server}", function () { this.end("${message}-tcp"); }).on("error", () => {});
  udp.send("${message}-udp", ${UDP_PORT}, "${server}");
}, 2000);`;

/** Numbered datagrams from one socket, 5 per second. */
const stream = (server: string) => `
const udp = require("node:dgram").createSocket("udp4");
let i = 0;
setInterval(() => udp.send("seq-" + i++, ${STREAM_PORT}, "${server}"), 200);`;

async function runningPod(name: string, manifest: string): Promise<string> {
  await kubectl(["apply", "-f", "-"], { input: manifest });
  return (await waitForPod(name, "Running", 10 * 60_000)).status.podIP ?? "";
}

const logOf = async (name: string) => (await kubectl(["logs", name, "-n", "default"], { okExitCodes: [1] })).stdout;

/** tcpdump on n1's tap (the host side of the guest's only NIC), until stopped. */
function capture(file: string): Daemon {
  const c = cluster();
  return new Daemon({
    name: "tcpdump-tap-n1",
    netns: c.underlayNs,
    logFile: join(c.dir, "tcpdump.log"),
    argv: ["tcpdump", "-i", "tap-n1", "--immediate-mode", "-U", "-n", "-s", "0", "-w", file],
  });
}

describe("pod traffic between nodes", () => {
  let serverIP = "";
  const names = ["server"];

  beforeAll(async () => {
    const nodes = cluster().nodes;
    if (nodes.length < 2) throw new Error(`pod traffic between nodes needs 2 nodes; this cluster has ${nodes.length} (CLOAK_CLUSTER_NODES)`);
    await deployCloak();
    // On n2: listeners printing what arrives (the message test's and the restart test's).
    serverIP = await runningPod("server", nodePod("server", "n2", SERVER));
    await waitFor("the server listening", 5 * 60_000, async () => ((await logOf("server")).includes("listening") ? true : undefined));
  }, 30 * 60_000);

  afterAll(async () => {
    await kubectl(["delete", "pod", ...names, "-n", "default", "--ignore-not-found", "--wait=true", "--timeout=120s"], { timeoutMs: 150_000 });
  });

  it("crosses the wire only as WireGuard: no pod-to-pod packet and no message in clear, TCP and UDP both arrive", async () => {
    const marker = `cloak-wire-${randomBytes(8).toString("hex")}`;
    const file = join(cluster().dir, "tap-n1.pcap");
    const tcpdump = capture(file);
    try {
      await tcpdump.waitForOutput((o) => o.includes("listening on"), 30_000);
      // The client on n1 repeats both until deleted: the mesh may still be handshaking at first.
      names.push("client");
      await runningPod("client", nodePod("client", "n1", client(serverIP, marker)));
      await waitFor("the TCP and UDP messages at the server", 5 * 60_000, async () => {
        const log = await logOf("server");
        return log.includes(`tcp ${marker}-tcp`) && log.includes(`udp${UDP_PORT} ${marker}-udp`) ? true : undefined;
      });
    } finally {
      await new Promise((r) => setTimeout(r, 500));
      await tcpdump.stop("SIGINT");
    }
    const raw = await readFile(file);
    expect(raw.includes(Buffer.from(marker)), "the message appears in clear on n1's tap").toBe(false);
    const text = (await hostRun({ file: "ip", args: ["netns", "exec", cluster().underlayNs, "tcpdump", "-r", file, "-n", "ip"], okExitCodes: [1] })).stdout;
    const between = text.split("\n").filter((l) => /192\.0\.2\.11\.\d+ > 192\.0\.2\.12\.\d+|192\.0\.2\.12\.\d+ > 192\.0\.2\.11\.\d+/.test(l));
    expect(between.length, "packets between the nodes while the messages crossed").toBeGreaterThan(0);
    for (const line of between) expect(line).toMatch(new RegExp(`192\\.0\\.2\\.1[12]\\.${WIREGUARD_PORT} > 192\\.0\\.2\\.1[12]\\.${WIREGUARD_PORT}: UDP`));
    // Pod to pod in clear would show pod addresses at both ends (a pod's TLS to the API server
    // at 192.0.2.100 crosses with its pod address as the source, as it should).
    expect(text, "pod-to-pod traffic in clear on the underlay").not.toMatch(/198\.51\.100\.\d+\.\d+ > 198\.51\.100\./);
    await rm(file, { force: true });
  });

  it("keeps flowing while netd's pod on n1 is deleted and replaced: no datagram lost", async () => {
    const name = "stream";
    names.push(name);
    await runningPod(name, nodePod(name, "n1", stream(serverIP)));
    const received = async () => (await logOf("server")).split("\n").filter((l) => l.startsWith(`udp${STREAM_PORT} `)).join("\n");
    await waitFor("the stream at the server", 5 * 60_000, async () => ((await received()).includes("seq-") ? true : undefined));

    const before = await daemonPodOn("cloak-netd", "n1");
    await kubectl(["-n", NAMESPACE, "delete", "pod", before, "--wait=true", "--timeout=300s"], { timeoutMs: 320_000 });
    await kubectl(["-n", NAMESPACE, "rollout", "status", "daemonset/cloak-netd", "--timeout=600s"], { timeoutMs: 620_000 });
    const after = await daemonPodOn("cloak-netd", "n1");
    expect(after).not.toBe(before);
    // A few seconds more with the new netd in charge.
    await new Promise((r) => setTimeout(r, 5_000));
    await kubectl(["delete", "pod", name, "-n", "default", "--wait=true", "--timeout=120s"], { timeoutMs: 150_000 });

    const seqs = [...(await received()).matchAll(/seq-(\d+)/g)].map((m) => Number(m[1]));
    expect(seqs.length, "datagrams received").toBeGreaterThan(20);
    const first = seqs[0] ?? 0;
    const last = seqs[seqs.length - 1] ?? 0;
    const missing: number[] = [];
    const seen = new Set(seqs);
    for (let i = first; i <= last; i++) if (!seen.has(i)) missing.push(i);
    expect(missing, `lost datagrams between seq-${first} and seq-${last}`).toEqual([]);
  });
});
