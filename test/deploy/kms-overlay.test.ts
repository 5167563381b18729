import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { CoreV1Api, type V1Container, type V1CronJob, type V1Deployment, type V1PodSpec } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseKeyServiceArgs } from "../../keyservice/config.js";
import { parseKekArgs } from "../../keyservice/kek/commands.js";
import { WRAPPED_FILE } from "../../keyservice/kek/envelope.js";
import { waitFor } from "../support/wait.js";
import { NAMESPACE, adminClient, find, kubectl, manifestsDir, parseYamlObjects, render, type KubeObject } from "./kube.js";

// overlays/kms as an admin gets it: the key service reads only the wrapped master secret through
// a KMS v2 plugin sidecar, the rewrap CronJob talks to the same socket with the same cluster id,
// and on the real API server the admission policy refuses a key service Secret that holds a
// plain master secret (the Secret holds only the wrapped form) while the rewrap Job's service
// account may touch that one Secret and nothing else.

const SECRET = "cloak-keyservice-keys";
const REWRAP_SA = `system:serviceaccount:${NAMESPACE}:cloak-keyservice-rewrap`;
let objects: KubeObject[];
let applied: KubeObject[] = [];
let core: CoreV1Api;

const podOf = (o: V1Deployment | V1CronJob): V1PodSpec => {
  const spec = "jobTemplate" in (o.spec ?? {}) ? (o as V1CronJob).spec?.jobTemplate.spec?.template.spec : (o as V1Deployment).spec?.template.spec;
  if (!spec) throw new Error(`${o.metadata?.name} has no pod template`);
  return spec;
};
const named = (list: V1Container[] | undefined, name: string): V1Container => {
  const c = list?.find((x) => x.name === name);
  if (!c) throw new Error(`no container ${name}`);
  return c;
};
/** What kubelet makes of `$(VAR)` in args, with the ConfigMap the env var names. */
function expand(c: V1Container, configMaps: Record<string, Record<string, string>>): string[] {
  const env: Record<string, string> = {};
  for (const e of c.env ?? []) {
    const ref = e.valueFrom?.configMapKeyRef;
    env[e.name] = e.value ?? (ref ? (configMaps[ref.name ?? ""]?.[ref.key] ?? "") : "");
  }
  return (c.args ?? []).map((a) => a.replace(/\$\((\w+)\)/g, (_, n: string) => env[n] ?? ""));
}
const configMapsOf = (list: KubeObject[]) =>
  Object.fromEntries(list.filter((o) => o.kind === "ConfigMap").map((o) => [o.metadata.name, (o as unknown as { data: Record<string, string> }).data]));

beforeAll(async () => {
  objects = await render("overlays/kms");
  core = adminClient().makeApiClient(CoreV1Api);
});

afterAll(async () => {
  for (const o of applied) await kubectl(["delete", "--ignore-not-found", "--wait=false", o.kind.toLowerCase(), o.metadata.name, ...(o.metadata.namespace ? ["-n", o.metadata.namespace] : [])]);
  await core?.deleteNamespacedSecret({ namespace: NAMESPACE, name: SECRET }).catch(() => undefined);
});

describe("the KMS overlay", () => {
  it("runs the key service in KMS mode on the plugin's socket, with only the wrapped secret and the salt mounted", () => {
    const deployment = find<V1Deployment>(objects, "Deployment", "cloak-keyservice");
    const spec = podOf(deployment);
    const keyservice = named(spec.containers, "keyservice");
    const [verb, ...args] = expand(keyservice, configMapsOf(objects));
    expect(verb).toBe("keyservice");
    // The placeholder cluster id is refused: an overlay applied as it is does not serve.
    expect(() => parseKeyServiceArgs(args)).toThrow(/--cluster-id: cluster id "SET ME.*must be 1-128/);
    const config = parseKeyServiceArgs(args.map((a) => (a.startsWith("--cluster-id=") ? "--cluster-id=prod-eu-1" : a)));
    expect(config.kms).toMatchObject({ endpoint: "unix:///run/kms/kms.sock", wrappedMasterSecretFile: `/etc/cloak/keys/${WRAPPED_FILE}`, clusterId: "prod-eu-1" });
    expect(args.some((a) => a.startsWith("--master-secret"))).toBe(false);
    // KMS mode keeps the base's per-node, per-volume authorisation.
    expect(config.authz.mode).toBe("kubernetes");

    // The plugin: a native sidecar (started first, kept running) on the same emptyDir.
    const plugin = named(spec.initContainers, "kms-plugin");
    expect(plugin.restartPolicy).toBe("Always");
    const socketVolume = plugin.volumeMounts?.find((m) => m.mountPath === "/run/kms")?.name;
    expect(keyservice.volumeMounts).toContainEqual({ name: socketVolume, mountPath: "/run/kms" });
    expect(spec.volumes?.find((v) => v.name === socketVolume)?.emptyDir).toBeDefined();

    // The Secret volume projects two keys: a plain master-secret, were it there, never reaches the pod.
    const keys = spec.volumes?.find((v) => v.name === "keys")?.secret;
    expect(keys?.secretName).toBe(SECRET);
    expect(keys?.items?.map((i) => i.key).sort()).toEqual([WRAPPED_FILE, "salt"]);
    expect(keyservice.volumeMounts).toContainEqual({ name: "keys", mountPath: "/etc/cloak/keys", readOnly: true });
  });

  it("rewraps with the same plugin, socket and cluster id, on the key service's Secret", () => {
    const cron = find<V1CronJob>(objects, "CronJob", "cloak-keyservice-rewrap");
    const spec = podOf(cron);
    const [keys, verb, ...args] = expand(named(spec.containers, "rewrap"), configMapsOf(objects));
    expect([keys, verb]).toEqual(["keys", "rewrap"]);
    expect(() => parseKekArgs("rewrap", args)).toThrow(/cluster id "SET ME/);
    const command = parseKekArgs("rewrap", args.map((a) => (a.startsWith("--cluster-id=") ? "--cluster-id=prod-eu-1" : a)));
    expect(command.store).toEqual({ kind: "secret", ref: `${NAMESPACE}/${SECRET}`, kubeconfig: undefined });
    expect(command.target.endpoint).toBe("unix:///run/kms/kms.sock");
    const deploymentSpec = podOf(find<V1Deployment>(objects, "Deployment", "cloak-keyservice"));
    const envOf = (c: V1Container) => c.env?.find((e) => e.name === "CLOAK_CLUSTER_ID");
    expect(envOf(named(spec.containers, "rewrap"))).toEqual(envOf(named(deploymentSpec.containers, "keyservice")));
    const plugin = (s: V1PodSpec) => {
      const { image, args: a, restartPolicy } = named(s.initContainers, "kms-plugin");
      return { image, args: a, restartPolicy };
    };
    expect(plugin(spec)).toEqual(plugin(deploymentSpec));
    expect(spec.serviceAccountName).toBe("cloak-keyservice-rewrap");
    expect(cron.spec?.concurrencyPolicy).toBe("Forbid");
  });

  it("takes the cluster id from an admin's overlay", async () => {
    const dir = await mkdtemp(join(tmpdir(), "cloak-deploy-kms-"));
    try {
      await writeFile(
        join(dir, "kustomization.yaml"),
        [
          "resources:",
          `  - ${relative(dir, join(manifestsDir(), "overlays/kms"))}`,
          "configMapGenerator:",
          "  - name: cloak-cluster",
          `    namespace: ${NAMESPACE}`,
          "    behavior: replace",
          "    literals: [cluster-id=prod-eu-1]",
          "",
        ].join("\n"),
      );
      const mine = parseYamlObjects((await kubectl(["kustomize", "--load-restrictor=LoadRestrictionsNone", dir])).stdout);
      const keyservice = named(podOf(find<V1Deployment>(mine, "Deployment", "cloak-keyservice")).containers, "keyservice");
      expect(parseKeyServiceArgs(expand(keyservice, configMapsOf(mine)).slice(1)).kms?.clusterId).toBe("prod-eu-1");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("the KMS overlay on the API server", () => {
  beforeAll(async () => {
    await kubectl(["apply", "-f", join(manifestsDir(), "base/namespace.yaml")]);
    // What these tests create must not exist yet, whatever another file left in the namespace.
    await kubectl(["-n", NAMESPACE, "delete", "secret", "--ignore-not-found", SECRET]);
    applied = objects.filter((o) => ["ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", "ServiceAccount", "Role", "RoleBinding"].includes(o.kind) && !o.metadata.name.startsWith("cloak-netd") && (o.metadata.name.includes("rewrap") || o.metadata.name.includes("wrapped-only")));
    expect(applied.map((o) => `${o.kind}/${o.metadata.name}`).sort()).toEqual([
      "Role/cloak-keyservice-rewrap",
      "RoleBinding/cloak-keyservice-rewrap",
      "ServiceAccount/cloak-keyservice-rewrap",
      "ValidatingAdmissionPolicy/cloak-keyservice-keys-wrapped-only",
      "ValidatingAdmissionPolicyBinding/cloak-keyservice-keys-wrapped-only",
    ]);
    await kubectl(["apply", "-f", "-"], { input: applied.map((o) => JSON.stringify(o)).join("\n") });
  });

  const secret = (data: Record<string, string>) => ({ metadata: { name: SECRET, namespace: NAMESPACE }, data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v).toString("base64")])) });
  const refusal = (p: Promise<unknown>) => p.then(() => undefined, (err: unknown) => err as { code?: number; body?: string });

  it("refuses a key service Secret with a plain master secret, and accepts the wrapped form", async () => {
    // The policy takes effect once the API server has loaded it: wait for the first refusal.
    const plain = secret({ "master-secret": "x".repeat(32), salt: "s".repeat(32) });
    const refused = await waitFor(
      "the admission policy to refuse a plain master secret",
      async () => {
        const err = await refusal(core.createNamespacedSecret({ namespace: NAMESPACE, body: plain }));
        if (err?.code === 403) return err;
        // Not loaded yet: it was created. Take it away and try again.
        if (!err) await core.deleteNamespacedSecret({ namespace: NAMESPACE, name: SECRET });
        else throw new Error(`unexpected ${err.code}: ${err.body}`);
        return undefined;
      },
      30_000,
    );
    expect(refused.code).toBe(403);
    expect(String(refused.body)).toMatch(/must not hold a plain master-secret in KMS mode/);
    // stringData is refused the same way: the API server folds it into data before admission.
    const viaStringData = await refusal(
      core.createNamespacedSecret({ namespace: NAMESPACE, body: { metadata: { name: SECRET }, stringData: { "master-secret": "x".repeat(32) } } }),
    );
    expect(viaStringData?.code).toBe(403);

    await core.createNamespacedSecret({ namespace: NAMESPACE, body: secret({ [WRAPPED_FILE]: "{}", salt: "s".repeat(32) }) });
    const current = await core.readNamespacedSecret({ namespace: NAMESPACE, name: SECRET });
    const addPlain = await refusal(
      core.replaceNamespacedSecret({ namespace: NAMESPACE, name: SECRET, body: { ...current, data: { ...current.data, "master-secret": Buffer.from("x".repeat(32)).toString("base64") } } }),
    );
    expect(addPlain?.code).toBe(403);
    // Other Secrets are none of its business.
    await core.createNamespacedSecret({ namespace: NAMESPACE, body: { metadata: { name: "unrelated" }, stringData: { "master-secret": "fine here" } } });
    await core.deleteNamespacedSecret({ namespace: NAMESPACE, name: "unrelated" });
  });

  it("lets the rewrap Job's service account read and replace that one Secret, and nothing else", async () => {
    const can = async (...args: string[]) =>
      (await kubectl(["auth", "can-i", ...args, "--as", REWRAP_SA, "-n", NAMESPACE], { okExitCodes: [0, 1] })).stdout.trim();
    expect(await can("get", `secret/${SECRET}`)).toBe("yes");
    expect(await can("update", `secret/${SECRET}`)).toBe("yes");
    expect(await can("get", "secret/cloak-keyservice-tls")).toBe("no");
    expect(await can("list", "secrets")).toBe("no");
    expect(await can("delete", `secret/${SECRET}`)).toBe("no");
    expect(await can("create", "pods")).toBe("no");
  });
});
