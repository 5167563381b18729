import { randomBytes } from "node:crypto";
import { beforeAll, describe, expect, it } from "vitest";
import { daemonPodOn, deployCloak, NAMESPACE } from "./deploy.js";
import { cluster, kubectl, showLogsOnFailure, waitFor, waitForPod } from "./kube.js";

/**
 * What a cluster admin's users do with cloak's volumes, through kubelet: a claim of the
 * cloak-encrypted class, a pod that writes to it, a new pod that reads it back, and the claim
 * deleted. The node's disk is looked at through the node plugin's pod (it mounts the volumes
 * directory): only ciphertext there, and nothing once the claim is gone.
 */

const VOLUMES_DIR = "/var/lib/cloak/volumes";

showLogsOnFailure();

beforeAll(async () => {
  await deployCloak();
}, 25 * 60_000);

/** A busybox pod on the claim `claim`, running `script` once. */
function podOn(name: string, claim: string, script: string): string {
  return JSON.stringify({
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, namespace: "default" },
    spec: {
      restartPolicy: "Never",
      terminationGracePeriodSeconds: 5,
      containers: [{ name: "app", image: "cloak.invalid/busybox:test", command: ["sh", "-c", script], volumeMounts: [{ name: "data", mountPath: "/data" }] }],
      volumes: [{ name: "data", persistentVolumeClaim: { claimName: claim } }],
    },
  });
}

async function runToCompletion(name: string, manifest: string): Promise<{ log: string; node: string }> {
  await kubectl(["apply", "-f", "-"], { input: manifest });
  const pod = await waitForPod(name, "Succeeded", 10 * 60_000);
  const log = (await kubectl(["logs", name, "-n", "default"])).stdout;
  await kubectl(["delete", "pod", name, "-n", "default", "--wait=true", "--timeout=300s"], { timeoutMs: 320_000 });
  return { log, node: pod.spec.nodeName ?? "" };
}

/** Runs a shell command in the node plugin's container on `node`. */
async function onNodeDisk(node: string, script: string): Promise<{ stdout: string; exitCode: number }> {
  const pod = await daemonPodOn("cloak-csi-node", node);
  const out = await kubectl(["-n", NAMESPACE, "exec", pod, "-c", "cloak-csi", "--", "sh", "-c", script], { okExitCodes: [1, 2] });
  return { stdout: out.stdout, exitCode: out.exitCode };
}

describe("cloak's volumes in a real cluster", () => {
  it("kubelet registered cloak's node plugin on every node (no registrar sidecar)", async () => {
    for (const n of cluster().nodes) {
      const drivers = (await kubectl(["get", "csinode", n.name, "-o", "jsonpath={.spec.drivers[*].name}"])).stdout;
      expect(drivers.split(" ")).toContain("csi.cloak.dev");
    }
  });

  it("a claim's data outlives its pod, the node's disk holds only ciphertext, and deleting the claim removes the volume", async () => {
    const marker = `cloak-marker-${randomBytes(8).toString("hex")}`;
    const claim = "data";
    await kubectl(["apply", "-f", "-"], {
      input: JSON.stringify({
        apiVersion: "v1",
        kind: "PersistentVolumeClaim",
        metadata: { name: claim, namespace: "default" },
        spec: { storageClassName: "cloak-encrypted", accessModes: ["ReadWriteOnce"], resources: { requests: { storage: "64Mi" } } },
      }),
    });
    let volume = "";
    try {
      const writer = await runToCompletion("writer", podOn("writer", claim, `echo ${marker} > /data/marker && sync && echo written`));
      expect(writer.log).toContain("written");
      volume = (await kubectl(["get", "pvc", claim, "-n", "default", "-o", "jsonpath={.spec.volumeName}"])).stdout.trim();
      const handle = (await kubectl(["get", "pv", volume, "-o", "jsonpath={.spec.csi.volumeHandle}"])).stdout.trim();
      expect(handle).not.toBe("");
      const file = `${VOLUMES_DIR}/${handle}.img`;

      // On the node: the volume's file exists and is LUKS2, and the marker is nowhere in it.
      const disk = await onNodeDisk(writer.node, `head -c 6 ${file} | od -An -c; grep -c ${marker} ${file}`);
      expect(disk.stdout).toMatch(/L\s+U\s+K\s+S\s+272\s+276/);
      expect(disk.exitCode, "grep finds the marker in the volume's file").toBe(1);

      const reader = await runToCompletion("reader", podOn("reader", claim, "cat /data/marker"));
      expect(reader.log.trim()).toBe(marker);

      await kubectl(["delete", "pvc", claim, "-n", "default", "--wait=true", "--timeout=300s"], { timeoutMs: 320_000 });
      await waitFor(`PV ${volume} deleted`, 5 * 60_000, async () => {
        const pv = await kubectl(["get", "pv", volume, "--ignore-not-found", "-o", "name"]);
        return pv.stdout.trim() === "" ? true : undefined;
      });
      const gone = await onNodeDisk(writer.node, `test -e ${file}; echo $?`);
      expect(gone.stdout.trim(), `${file} after the claim was deleted`).toBe("1");
    } finally {
      await kubectl(["delete", "pod", "writer", "reader", "-n", "default", "--ignore-not-found", "--wait=true", "--timeout=300s"], { timeoutMs: 320_000 });
      await kubectl(["delete", "pvc", claim, "-n", "default", "--ignore-not-found", "--wait=true", "--timeout=300s"], { timeoutMs: 320_000 });
    }
  });
});
