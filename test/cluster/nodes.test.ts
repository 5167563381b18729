import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { cluster, kubectl, kubectlAsNode, showLogsOnFailure, waitFor, waitForPod } from "./kube.js";

/**
 * The cluster itself, before anything of cloak's runs on it: each node registered by its own
 * kubelet (its client certificate, through the Node authorizer), pods placed by the scheduler
 * run under containerd and runc with the restricted profile honoured, get addresses from their
 * node's pod range, and their logs come back through the API server from kubelet. The checks
 * later tiers rely on, made once here.
 */

interface NodeJson {
  spec: { podCIDR?: string; taints?: { key: string }[] };
  status: { conditions: { type: string; status: string }[]; addresses: { type: string; address: string }[]; nodeInfo: { kubeletVersion: string; containerRuntimeVersion: string } };
}

showLogsOnFailure();

describe("the cluster", () => {
  it("each node is Ready, registered by its kubelet with its planned address and pod range", async () => {
    for (const n of cluster().nodes) {
      const node = JSON.parse((await kubectl(["get", "node", n.name, "-o", "json"])).stdout) as NodeJson;
      expect(node.status.conditions.find((c) => c.type === "Ready")?.status).toBe("True");
      expect(node.status.addresses).toContainEqual({ type: "InternalIP", address: n.ip });
      expect(node.spec.podCIDR).toBe(n.podCIDR);
      expect(node.status.nodeInfo.kubeletVersion).toBe("v1.34.4");
      expect(node.status.nodeInfo.containerRuntimeVersion).toBe("containerd://2.2.9");
    }
  });

  it("a pod the scheduler places runs under the restricted profile, with an address of its node's range, and its log comes back", async () => {
    const marker = `cloak-cluster-${randomBytes(6).toString("hex")}`;
    const name = "restricted-probe";
    const pod = {
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name, namespace: "default" },
      spec: {
        restartPolicy: "Never",
        terminationGracePeriodSeconds: 5,
        securityContext: { runAsNonRoot: true, runAsUser: 1000, runAsGroup: 1000, seccompProfile: { type: "RuntimeDefault" } },
        containers: [
          {
            name: "probe",
            image: "cloak.invalid/busybox:test",
            imagePullPolicy: "Never",
            securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] }, readOnlyRootFilesystem: true },
            // What the kernel says about this process, then stay up until deleted.
            command: ["sh", "-c", `echo ${marker}; grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status; id -u; trap 'exit 0' TERM; sleep 3600 & wait`],
          },
        ],
      },
    };
    await kubectl(["apply", "-f", "-"], { input: JSON.stringify(pod) });
    try {
      const running = await waitForPod(name, "Running", 5 * 60_000);
      const node = cluster().nodes.find((n) => n.name === running.spec.nodeName);
      expect(node, `scheduled onto ${running.spec.nodeName}`).toBeDefined();
      expect(inCidr(running.status.podIP ?? "", node?.podCIDR ?? "")).toBe(true);
      const log = await waitFor("the pod's log", 60_000, async () => {
        const out = (await kubectl(["logs", name, "-n", "default"])).stdout;
        return out.includes("Seccomp") ? out : undefined;
      });
      expect(log).toContain(marker);
      expect(log).toMatch(/^CapEff:\s+0{16}$/m);
      expect(log).toMatch(/^NoNewPrivs:\s+1$/m);
      expect(log).toMatch(/^Seccomp:\s+2$/m);
      expect(log).toMatch(/^1000$/m);
    } finally {
      await kubectl(["delete", "pod", name, "-n", "default", "--wait=true", "--timeout=180s"], { timeoutMs: 200_000 });
    }
  });

  it("a node's credentials reach only what the Node authorizer gives that node", async () => {
    const n1 = cluster().nodes[0]?.name ?? "";
    await kubectl(["create", "secret", "generic", "not-for-nodes", "-n", "default", "--from-literal=k=v"]);
    try {
      // Its own Node: readable. Another node's object: not to be created or changed by it.
      await kubectlAsNode(n1, ["get", "node", n1]);
      const other = await kubectlAsNode(n1, ["label", "node", n1, "node-restriction.kubernetes.io/x=y"], { okExitCodes: [1] });
      expect(other.exitCode).toBe(1);
      expect(other.stderr).toMatch(/forbidden|not allowed/i);
      // A Secret no pod of the node uses: forbidden.
      const secret = await kubectlAsNode(n1, ["get", "secret", "not-for-nodes", "-n", "default"], { okExitCodes: [1] });
      expect(secret.exitCode).toBe(1);
      expect(secret.stderr).toMatch(/forbidden/i);
    } finally {
      await kubectl(["delete", "secret", "not-for-nodes", "-n", "default"]);
    }
  });
});

function inCidr(ip: string, cidr: string): boolean {
  const [base = "", bits = "32"] = cidr.split("/");
  const toInt = (a: string) => a.split(".").reduce((acc, o) => acc * 256 + Number(o), 0);
  const size = 2 ** (32 - Number(bits));
  return /^\d+\.\d+\.\d+\.\d+$/.test(ip) && Math.floor(toInt(ip) / size) === Math.floor(toInt(base) / size);
}
