import { CoreV1Api, KubeConfig, type V1Secret } from "@kubernetes/client-node";
import { FailedPreconditionError, UnavailableError } from "../../lib/errors.js";
import type { KeyStore } from "./store.js";

// The Secret half of ./store.ts, loaded only for --secret: the Kubernetes client is a large
// import that `cloak keys init` and the directory commands do not need.

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
