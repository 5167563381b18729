import { CustomObjectsApi, KubeConfig } from "@kubernetes/client-node";
import { join } from "node:path";
import { inject } from "vitest";
import { createRunner, type CommandResult, type Runner } from "../../lib/exec.js";
import { createLogger } from "../../lib/log.js";
import { packageRoot } from "../../lib/paths.js";
import { parseYamlObjects, type KubeObject } from "./objects.js";

export { find, parseYamlObjects, type KubeObject } from "./objects.js";

/**
 * What the deployment tests share: the API server global-setup.ts started, kubectl against it,
 * and the manifests as kustomize renders them.
 */

declare module "vitest" {
  export interface ProvidedContext {
    deployCluster: DeployCluster;
  }
}

export interface DeployCluster {
  /** Scratch directory of this run (the API server's files are below it). */
  readonly dir: string;
  /** system:masters. */
  readonly kubeconfig: string;
  readonly url: string;
  readonly caFile: string;
  readonly kubectl: string;
  readonly kubeControllerManager: string;
}

export const OVERLAYS = ["base", "overlays/local", "overlays/cert-manager", "overlays/kms"] as const;
export type Overlay = (typeof OVERLAYS)[number];

export const NAMESPACE = "cloak-system";

export function manifestsDir(): string {
  return join(packageRoot(), "manifests");
}

export function deployCluster(): DeployCluster {
  return inject("deployCluster");
}

export function adminClient(): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(deployCluster().kubeconfig);
  return kc;
}

let runner: Runner | undefined;
/** A key's CloakKey record (keyservice/README.md, "Authorisation"), as the admin reads it. */
export interface CloakKeyRecord {
  readonly spec: { driver: string; node?: string; volumes?: string[]; snapshots?: string[]; revoked?: boolean; revokedAt?: string };
}

/** The CloakKey record of a key id, or undefined when there is none. */
export async function readCloakKey(keyId: string): Promise<CloakKeyRecord | undefined> {
  try {
    return (await adminClient().makeApiClient(CustomObjectsApi).getClusterCustomObject({ group: "cloak.dev", version: "v1alpha1", plural: "cloakkeys", name: keyId })) as CloakKeyRecord;
  } catch (err) {
    if ((err as { code?: number }).code === 404) return undefined;
    throw err;
  }
}

export function testRunner(): Runner {
  runner ??= createRunner({ logger: createLogger({ component: "deploy-test", level: process.env["LOG_LEVEL"] ?? "warn" }) });
  return runner;
}

/** kubectl as system:masters against the test API server. */
export function kubectl(args: readonly string[], options: { input?: string; okExitCodes?: number[]; kubeconfig?: string } = {}): Promise<CommandResult> {
  const c = deployCluster();
  return testRunner()({
    file: c.kubectl,
    args: [`--kubeconfig=${options.kubeconfig ?? c.kubeconfig}`, ...args],
    ...(options.input === undefined ? {} : { input: options.input }),
    ...(options.okExitCodes ? { okExitCodes: options.okExitCodes } : {}),
    timeoutMs: 120_000,
  });
}

/** `kubectl kustomize` of an overlay: what `kubectl apply -k` would send. */
export async function render(overlay: Overlay, kubectlPath = deployCluster().kubectl): Promise<KubeObject[]> {
  const out = await testRunner()({ file: kubectlPath, args: ["kustomize", join(manifestsDir(), overlay)], timeoutMs: 60_000 });
  return parseYamlObjects(out.stdout);
}
