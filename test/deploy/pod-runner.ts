import type { V1Container, V1PodSpec, V1Secret } from "@kubernetes/client-node";
import { chmod, mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { packageRoot } from "../../lib/paths.js";

/**
 * Runs a container of the rendered manifests as a process on this machine, the way kubelet
 * would start it: same arguments, `$(VAR)` expanded from its env (downward API included),
 * with each volume mount's path replaced by a host directory standing in for the volume. So a
 * test exercises the manifests' own flags against the real binaries, not a copy of them.
 */

export interface PodIdentity {
  readonly nodeName: string;
  readonly podName: string;
  readonly namespace: string;
}

export interface HostCommandOptions {
  readonly pod: PodIdentity;
  readonly container: V1Container;
  /** Volume name → host directory standing in for it. Every mount must be mapped. */
  readonly volumes: Readonly<Record<string, string>>;
  /** Image repository (no tag) → the argv that runs it here. */
  readonly images: Readonly<Record<string, readonly string[]>>;
  /** Literal rewrites of argument text: Service names and listen addresses → loopback. */
  readonly rewrite?: Readonly<Record<string, string>>;
}

export interface HostCommand {
  readonly argv: readonly string[];
  readonly env: Readonly<Record<string, string>>;
}

/** The argv of the cloak image: its ENTRYPOINT, with this checkout's build. */
export function cloakArgv(): string[] {
  return [process.execPath, join(packageRoot(), "dist/cmd/cloak.js")];
}

export function container(spec: V1PodSpec | undefined, name: string): V1Container {
  const found = spec?.containers.find((c) => c.name === name);
  if (!found) throw new Error(`no container ${name} in the pod spec`);
  return found;
}

/** `registry/name:tag` → [`registry/name`, `tag`]. */
export function splitImage(image: string): [string, string] {
  const at = image.lastIndexOf(":");
  if (at <= image.lastIndexOf("/")) throw new Error(`image ${image} has no tag`);
  return [image.slice(0, at), image.slice(at + 1)];
}

export function hostCommand(o: HostCommandOptions): HostCommand {
  const c = o.container;
  const env: Record<string, string> = {};
  for (const e of c.env ?? []) {
    if (e.value !== undefined) env[e.name] = e.value;
    else if (e.valueFrom?.fieldRef) env[e.name] = fieldRef(e.valueFrom.fieldRef.fieldPath, o.pod);
    else throw new Error(`container ${c.name}: env ${e.name} comes from something this runner does not provide`);
  }
  const [repository] = splitImage(c.image ?? "");
  const entry = o.images[repository];
  if (!entry) throw new Error(`container ${c.name}: no local binary for image ${c.image}`);
  if (c.command) throw new Error(`container ${c.name}: a command override is not supported here`);

  // Longest mount path first, so that /var/lib/kubelet/plugins would win over /var/lib/kubelet.
  const mounts = (c.volumeMounts ?? [])
    .map((m) => {
      const host = o.volumes[m.name];
      if (!host) throw new Error(`container ${c.name}: volume ${m.name} (${m.mountPath}) is not mapped to a host directory`);
      return { path: m.mountPath, host };
    })
    .sort((a, b) => b.path.length - a.path.length);

  const args = (c.args ?? []).map((arg) => {
    let out = arg.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (whole, name: string) => env[name] ?? whole);
    for (const [from, to] of Object.entries(o.rewrite ?? {})) out = out.split(from).join(to);
    for (const m of mounts) {
      // A mount path where a path starts: after "=", "//" (unix://) or at the beginning.
      const re = new RegExp(`(^|=|//)${escapeRegExp(m.path)}(?=/|$)`, "g");
      out = out.replace(re, (_, lead: string) => `${lead}${m.host}`);
    }
    return out;
  });
  return { argv: [...entry, ...args], env };
}

function fieldRef(path: string, pod: PodIdentity): string {
  switch (path) {
    case "spec.nodeName":
      return pod.nodeName;
    case "metadata.name":
      return pod.podName;
    case "metadata.namespace":
      return pod.namespace;
    default:
      throw new Error(`fieldRef ${path} is not provided by this runner`);
  }
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/**
 * A Secret volume as kubelet writes it: one file per key, with the volume's defaultMode (and
 * group read added when the pod has an fsGroup, as kubelet does for read-only volumes).
 */
export async function writeSecretVolume(secret: V1Secret, dir: string, o: { defaultMode: number; fsGroup: boolean }): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o755 });
  const mode = o.fsGroup ? o.defaultMode | 0o440 : o.defaultMode;
  for (const [key, value] of Object.entries(secret.data ?? {})) {
    const file = join(dir, key);
    await writeFile(file, Buffer.from(value, "base64"), { mode });
    await chmod(file, mode);
  }
}
