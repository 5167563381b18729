import { lstat } from "node:fs/promises";
import { join } from "node:path";
import { CoreV1Api, KubeConfig, type V1Secret } from "@kubernetes/client-node";
import { writeFileAtomic } from "../../lib/atomic-file.js";
import { readKeyMaterial } from "../../lib/data-key.js";
import { FailedPreconditionError, UnavailableError } from "../../lib/errors.js";

/**
 * Where `cloak keys wrap` and `rewrap` find and put the master secret: a `cloak keys init`
 * directory, or the key service's Secret itself (what the rewrap Job uses). A write never
 * leaves half a change: a file is replaced atomically (lib/atomic-file.ts); a Secret in one
 * update that carries the resourceVersion it was read at, so a concurrent change makes it fail
 * instead of being overwritten.
 */
export interface KeyStore {
  /** For messages: the directory, or `secret NS/NAME`. */
  readonly where: string;
  /** True for the Secret: the plain master secret must not stay beside the wrapped one. */
  readonly isSecret: boolean;
  read(name: string): Promise<Buffer | undefined>;
  /** Sets (a Buffer) or removes (null) entries, all in one go where the store allows. */
  write(changes: Readonly<Record<string, Buffer | null>>): Promise<void>;
}

export function directoryStore(dir: string): KeyStore {
  return {
    where: dir,
    isSecret: false,
    async read(name) {
      const path = join(dir, name);
      if (!(await lstat(path).then(() => true, () => false))) return undefined;
      // The same checks the key service makes: a regular file, not world-readable.
      return readKeyMaterial(path, name);
    },
    async write(changes) {
      for (const [name, data] of Object.entries(changes)) {
        if (data === null) throw new FailedPreconditionError(`refusing to delete ${join(dir, name)}: a directory is the admin's own copy`);
        await writeFileAtomic(join(dir, name), data, { mode: 0o400 });
      }
    },
  };
}

/** `namespace/name` of a Secret, through the kubeconfig (or the pod's service account). */
export async function secretStore(ref: string, kubeconfig: string | undefined): Promise<KeyStore> {
  const [namespace, name, ...rest] = ref.split("/");
  if (!namespace || !name || rest.length > 0) throw new FailedPreconditionError(`--secret ${JSON.stringify(ref)} must be NAMESPACE/NAME`);
  const kc = new KubeConfig();
  if (kubeconfig) kc.loadFromFile(kubeconfig);
  else kc.loadFromDefault();
  const core = kc.makeApiClient(CoreV1Api);
  let secret: V1Secret;
  try {
    secret = await core.readNamespacedSecret({ namespace, name });
  } catch (err) {
    throw apiError(`reading secret ${ref}`, err);
  }
  return {
    where: `secret ${ref}`,
    isSecret: true,
    read(key) {
      const value = secret.data?.[key];
      return Promise.resolve(value === undefined ? undefined : Buffer.from(value, "base64"));
    },
    async write(changes) {
      const data = { ...secret.data };
      for (const [key, value] of Object.entries(changes)) {
        if (value === null) delete data[key];
        else data[key] = value.toString("base64");
      }
      try {
        // replace, not patch: it carries metadata.resourceVersion, so it fails with a conflict
        // if anyone changed the Secret since it was read.
        secret = await core.replaceNamespacedSecret({ namespace, name, body: { ...secret, data } });
      } catch (err) {
        throw apiError(`updating secret ${ref}`, err);
      }
    },
  };
}

function apiError(what: string, err: unknown): Error {
  const code = (err as { code?: number }).code;
  const body = (err as { body?: unknown }).body;
  const detail = typeof body === "string" ? body : (err as Error).message;
  if (code === 409) return new FailedPreconditionError(`${what}: it changed meanwhile (conflict); nothing was written, run again`);
  if (code === 404 || code === 403 || code === 401 || code === 422) return new FailedPreconditionError(`${what}: ${code}: ${detail}`);
  return new UnavailableError(`${what}: ${detail}`, { cause: err });
}
