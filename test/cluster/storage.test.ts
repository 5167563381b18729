import { randomBytes } from "node:crypto";
import { beforeAll, describe, expect, it } from "vitest";
import { daemonPodOn, deployCloak, NAMESPACE } from "./deploy.js";
import { cluster, kubectl, showLogsOnFailure, waitFor, waitForPod } from "./kube.js";

/**
 * What a cluster admin's users do with cloak's volumes, through kubelet: a claim of the
 * cloak-encrypted class, a pod that writes to it, a new pod that reads it back, the claim grown
 * under its running pod, a raw block claim likewise, and the claims deleted. The node's disk is
 * looked at through the node plugin's pod (it mounts the volumes directory): only ciphertext
 * there, and nothing once a claim is gone, whose key the key service then never gives again.
 */

const VOLUMES_DIR = "/var/lib/cloak/volumes";
const DEVICE = "/dev/xvda";
const DELETE_WAIT = ["--wait=true", "--timeout=300s"];

showLogsOnFailure();

beforeAll(async () => {
  await deployCloak();
}, 25 * 60_000);

async function createClaim(name: string, size: string, volumeMode: "Filesystem" | "Block"): Promise<void> {
  await kubectl(["apply", "-f", "-"], {
    input: JSON.stringify({
      apiVersion: "v1",
      kind: "PersistentVolumeClaim",
      metadata: { name, namespace: "default" },
      spec: { storageClassName: "cloak-encrypted", accessModes: ["ReadWriteOnce"], volumeMode, resources: { requests: { storage: size } } },
    }),
  });
}

/** A busybox pod running `script` on claim `claim`: mounted at /data, or as the device /dev/xvda. */
function podOn(name: string, claim: string, script: string, volumeMode: "Filesystem" | "Block" = "Filesystem"): string {
  const attach = volumeMode === "Block" ? { volumeDevices: [{ name: "data", devicePath: DEVICE }] } : { volumeMounts: [{ name: "data", mountPath: "/data" }] };
  return JSON.stringify({
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, namespace: "default" },
    spec: {
      restartPolicy: "Never",
      terminationGracePeriodSeconds: 1,
      containers: [{ name: "app", image: "cloak.invalid/busybox:test", command: ["sh", "-c", script], ...attach }],
      volumes: [{ name: "data", persistentVolumeClaim: { claimName: claim } }],
    },
  });
}

async function runToCompletion(name: string, manifest: string): Promise<{ log: string; node: string }> {
  await kubectl(["apply", "-f", "-"], { input: manifest });
  const pod = await waitForPod(name, "Succeeded", 10 * 60_000);
  const log = (await kubectl(["logs", name, "-n", "default"])).stdout;
  await deletePods(name);
  return { log, node: pod.spec.nodeName ?? "" };
}

async function deletePods(...names: string[]): Promise<void> {
  await kubectl(["delete", "pod", ...names, "-n", "default", "--ignore-not-found", ...DELETE_WAIT], { timeoutMs: 320_000 });
}

/** Runs a shell command in the node plugin's container on `node`. */
async function onNodeDisk(node: string, script: string): Promise<{ stdout: string; exitCode: number }> {
  const pod = await daemonPodOn("cloak-csi-node", node);
  const out = await kubectl(["-n", NAMESPACE, "exec", pod, "-c", "cloak-csi", "--", "sh", "-c", script], { okExitCodes: [1, 2] });
  return { stdout: out.stdout, exitCode: out.exitCode };
}

interface BoundVolume {
  readonly pv: string;
  readonly file: string;
  readonly keyId: string;
}

/** The PV a claim was bound to, its file on the node and the key id cloak recorded in it. */
async function boundVolume(claim: string): Promise<BoundVolume> {
  const pv = (await kubectl(["get", "pvc", claim, "-n", "default", "-o", "jsonpath={.spec.volumeName}"])).stdout.trim();
  const csi = JSON.parse((await kubectl(["get", "pv", pv, "-o", "jsonpath={.spec.csi}"])).stdout) as { volumeHandle: string; volumeAttributes?: Record<string, string> };
  const keyId = csi.volumeAttributes?.["cloak.dev/key-id"] ?? "";
  expect(keyId, `PV ${pv}'s key id`).toMatch(/^[0-9a-f-]{36}$/);
  return { pv, file: `${VOLUMES_DIR}/${csi.volumeHandle}.img`, keyId };
}

interface CloakKeySpec {
  readonly node?: string;
  readonly volumes?: string[];
  readonly revoked?: boolean;
}
async function cloakKey(keyId: string): Promise<CloakKeySpec> {
  return (JSON.parse((await kubectl(["get", "cloakkey", keyId, "-o", "json"])).stdout) as { spec: CloakKeySpec }).spec;
}

/** The volume's file on `node` is LUKS2 and holds no trace of `marker`. */
async function expectOnlyCiphertext(node: string, file: string, marker: string): Promise<void> {
  const disk = await onNodeDisk(node, `head -c 6 ${file} | od -An -c; grep -c ${marker} ${file}`);
  expect(disk.stdout).toMatch(/L\s+U\s+K\s+S\s+272\s+276/);
  expect(disk.exitCode, `grep finds the marker in ${file}`).toBe(1);
}

/** Deletes the claim; then its PV and its file are gone and its key is revoked for good. */
async function deleteAndExpectErased(claim: string, node: string, v: BoundVolume): Promise<void> {
  await kubectl(["delete", "pvc", claim, "-n", "default", ...DELETE_WAIT], { timeoutMs: 320_000 });
  await waitFor(`PV ${v.pv} deleted`, 5 * 60_000, async () => {
    const pv = await kubectl(["get", "pv", v.pv, "--ignore-not-found", "-o", "name"]);
    return pv.stdout.trim() === "" ? true : undefined;
  });
  const gone = await onNodeDisk(node, `test -e ${v.file}; echo $?`);
  expect(gone.stdout.trim(), `${v.file} after the claim was deleted`).toBe("1");
  expect(await cloakKey(v.keyId)).toMatchObject({ node, volumes: [], revoked: true });
}

describe("cloak's volumes in a real cluster", () => {
  it("kubelet registered cloak's node plugin on every node (no registrar sidecar)", async () => {
    for (const n of cluster().nodes) {
      const drivers = (await kubectl(["get", "csinode", n.name, "-o", "jsonpath={.spec.drivers[*].name}"])).stdout;
      expect(drivers.split(" ")).toContain("csi.cloak.dev");
    }
  });

  it("a claim's data outlives its pod, the claim grows under its running pod, the disk holds only ciphertext, and deleting the claim erases the volume", async () => {
    const marker = `cloak-marker-${randomBytes(8).toString("hex")}`;
    const claim = "data";
    await createClaim(claim, "64Mi", "Filesystem");
    try {
      const writer = await runToCompletion("writer", podOn("writer", claim, `echo ${marker} > /data/marker && sync && echo written`));
      expect(writer.log).toContain("written");
      const volume = await boundVolume(claim);
      expect(await cloakKey(volume.keyId)).toMatchObject({ node: writer.node, volumes: [expect.any(String)], revoked: false });
      await expectOnlyCiphertext(writer.node, volume.file, marker);

      // A new pod reads the data back, and stays up while its claim is grown.
      await kubectl(["apply", "-f", "-"], { input: podOn("reader", claim, "cat /data/marker; exec sleep 3600") });
      await waitForPod("reader", "Running", 10 * 60_000);
      const readBack = await waitFor("the reader's log", 60_000, async () => {
        const log = (await kubectl(["logs", "reader", "-n", "default"])).stdout.trim();
        return log === "" ? undefined : log;
      });
      expect(readBack).toBe(marker);
      // -P: one line per filesystem; busybox otherwise wraps after the long /dev/mapper name.
      const sizeKiB = async () => Number((await kubectl(["exec", "reader", "-n", "default", "--", "sh", "-c", "df -kP /data | awk 'NR==2{print $2}'"])).stdout.trim());
      const before = await sizeKiB();
      expect(before).toBeGreaterThan(40_000);
      await kubectl(["patch", "pvc", claim, "-n", "default", "--type=merge", "-p", '{"spec":{"resources":{"requests":{"storage":"128Mi"}}}}']);
      const after = await waitFor("the filesystem in the running pod grown", 5 * 60_000, async () => {
        const size = await sizeKiB();
        return size > before + 50_000 ? size : undefined;
      });
      expect(after).toBeLessThanOrEqual(131_072);
      await waitFor("the claim's status at 128Mi", 2 * 60_000, async () => {
        const status = (await kubectl(["get", "pvc", claim, "-n", "default", "-o", "jsonpath={.status.capacity.storage}"])).stdout.trim();
        return status === "128Mi" ? true : undefined;
      });
      expect((await kubectl(["exec", "reader", "-n", "default", "--", "cat", "/data/marker"])).stdout.trim()).toBe(marker);
      await deletePods("reader");

      await deleteAndExpectErased(claim, writer.node, volume);
    } finally {
      await deletePods("writer", "reader");
      await kubectl(["delete", "pvc", claim, "-n", "default", "--ignore-not-found", ...DELETE_WAIT], { timeoutMs: 320_000 });
    }
  });

  it("a raw block claim: the pod's device is the plaintext, the node's file only ciphertext, and deleting the claim erases it", async () => {
    const marker = `cloak-block-${randomBytes(8).toString("hex")}`;
    const claim = "raw";
    await createClaim(claim, "32Mi", "Block");
    try {
      // 4 KiB at 1 MiB into the device, so a plaintext write would sit inside the file's data area.
      const write = `printf %-4096s ${marker} | dd of=${DEVICE} bs=4096 seek=256 conv=fsync 2>/dev/null && echo written`;
      const writer = await runToCompletion("block-writer", podOn("block-writer", claim, write, "Block"));
      expect(writer.log).toContain("written");
      const volume = await boundVolume(claim);
      await expectOnlyCiphertext(writer.node, volume.file, marker);

      const reader = await runToCompletion("block-reader", podOn("block-reader", claim, `test -b ${DEVICE} && dd if=${DEVICE} bs=4096 skip=256 count=1 2>/dev/null`, "Block"));
      expect(reader.log.trim()).toBe(marker);

      await deleteAndExpectErased(claim, writer.node, volume);
    } finally {
      await deletePods("block-writer", "block-reader");
      await kubectl(["delete", "pvc", claim, "-n", "default", "--ignore-not-found", ...DELETE_WAIT], { timeoutMs: 320_000 });
    }
  });
});
