import { parseArgs } from "node:util";
import { KeyMaterialError } from "../../lib/data-key.js";
import { CloakError, InvalidArgumentError } from "../../lib/errors.js";
import type { KekBackend } from "./backend.js";
import { checkClusterId, formatEnvelope, MASTER_SECRET_PURPOSE, parseEnvelope, WRAPPED_FILE, type WrapContext } from "./envelope.js";
import { createKmsV2Backend } from "./kmsv2.js";
import { directoryStore, type KeyStore } from "./store.js";
import { unwrapSecret, wrapSecret } from "./wrap.js";

export const PLAIN_FILE = "master-secret";

export const KEK_SYNOPSIS = `  cloak keys wrap   (<dir> | --secret NS/NAME) --kms unix:///PATH --cluster-id ID [--kubeconfig FILE]
  cloak keys rewrap (<dir> | --secret NS/NAME) --kms unix:///PATH --cluster-id ID [--force] [--kubeconfig FILE]
`;

export const KEK_HELP = `wrap   encrypts the plain master secret with the KMS v2 plugin at --kms and writes
       ${WRAPPED_FILE} (verified: decrypted and checked before it is written). In a directory
       the plain file stays (it is your offline backup); in a Secret it is removed in the same
       update, so that the Secret holds only the wrapped form.
rewrap re-encrypts ${WRAPPED_FILE} under the KMS's current key (after a KEK rotation), verifies
       the new blob, then replaces the old one; nothing to do when it is current (--force does it
       anyway). The master secret does not change: every volume keeps its key.
       --cluster-id binds the blob to this cluster: the key service (--cluster-id) refuses a blob
       wrapped for another. --secret works in the cluster (the rewrap Job) or with --kubeconfig.
       Each KMS call waits up to 10 s for the plugin to listen on --kms.
`;

/** What `--kms` and `--cluster-id` say, for init, wrap and rewrap. */
export interface KmsTarget {
  readonly endpoint: string;
  readonly clusterId: string;
}

export const KMS_TARGET_OPTIONS = {
  kms: { type: "string" },
  "cluster-id": { type: "string" },
} as const;

/** Both or neither: --kms without a cluster id (or the reverse) is a mistake. */
export function parseKmsTarget(values: { kms?: string | undefined; "cluster-id"?: string | undefined }): KmsTarget | undefined {
  const { kms } = values;
  const clusterId = values["cluster-id"];
  if (kms === undefined && clusterId === undefined) return undefined;
  if (kms === undefined || clusterId === undefined) throw new InvalidArgumentError("--kms and --cluster-id go together");
  const bad = checkClusterId(clusterId);
  if (bad) throw new InvalidArgumentError(bad);
  return { endpoint: kms, clusterId };
}

const contextOf = (target: KmsTarget): WrapContext => ({ purpose: MASTER_SECRET_PURPOSE, clusterId: target.clusterId });

async function withBackend<T>(target: KmsTarget, fn: (backend: KekBackend) => Promise<T>): Promise<T> {
  // waitForReady: in the rewrap Job the plugin is a sidecar that may not listen yet when this
  // starts (a native sidecar counts as started once its process runs); each call waits for it
  // up to its deadline instead of failing the Job's pod at once.
  const backend = createKmsV2Backend({ endpoint: target.endpoint, timeoutMs: 10_000, waitForReady: true });
  try {
    return await fn(backend);
  } finally {
    backend.close();
  }
}

/** `keys init --kms`: the wrapped form of a new secret, verified, as the file's text. */
export function wrapNewSecret(target: KmsTarget, secret: Buffer): Promise<string> {
  return withBackend(target, async (backend) => formatEnvelope(await wrapSecret(backend, contextOf(target), secret)));
}

export interface WrapOptions {
  readonly store: KeyStore;
  readonly target: KmsTarget;
}

/** Plain → wrapped. Returns what to tell the admin. */
export async function keysWrap({ store, target }: WrapOptions): Promise<string> {
  if (await store.read(WRAPPED_FILE)) {
    throw new InvalidArgumentError(`${store.where} already holds ${WRAPPED_FILE}; to wrap it under the KMS's current key use \`cloak keys rewrap\``);
  }
  const secret = await store.read(PLAIN_FILE);
  if (!secret) throw new InvalidArgumentError(`${store.where} holds no ${PLAIN_FILE} to wrap`);
  try {
    const envelope = await withBackend(target, (backend) => wrapSecret(backend, contextOf(target), secret));
    await store.write({ [WRAPPED_FILE]: Buffer.from(formatEnvelope(envelope)), ...(store.isSecret ? { [PLAIN_FILE]: null } : {}) });
    return (
      `wrapped the master secret of ${store.where} under KMS key ${envelope.keyId} (cluster ${target.clusterId})\n` +
      (store.isSecret
        ? `the Secret now holds ${WRAPPED_FILE} and no plain ${PLAIN_FILE}\n`
        : `wrote ${WRAPPED_FILE}; ${PLAIN_FILE} is still there: keep it offline as your backup, and put only ${WRAPPED_FILE} and salt in the Secret\n`)
    );
  } finally {
    secret.fill(0);
  }
}

export interface RewrapOptions extends WrapOptions {
  readonly force: boolean;
}

/** Wrapped under an old key → wrapped under the current one, verified before it replaces the old. */
export async function keysRewrap({ store, target, force }: RewrapOptions): Promise<string> {
  const text = await store.read(WRAPPED_FILE);
  if (!text) throw new InvalidArgumentError(`${store.where} holds no ${WRAPPED_FILE}; wrap the master secret first (\`cloak keys wrap\`)`);
  const plain = store.isSecret ? await store.read(PLAIN_FILE) : undefined;
  if (plain) {
    plain.fill(0);
    throw new InvalidArgumentError(`${store.where} still holds a plain ${PLAIN_FILE}: wrapping protects nothing while it is there; remove it first`);
  }
  const old = parseEnvelope(text.toString("utf8"), `${store.where}: ${WRAPPED_FILE}`);
  return withBackend(target, async (backend) => {
    const status = await backend.status();
    if (status.keyId === old.keyId && !force) return `${store.where}: the master secret is already wrapped under the KMS's current key ${old.keyId}; nothing to do\n`;
    const context = contextOf(target);
    // The old blob must still open (the old KEK stays usable until this is done).
    const secret = await unwrapSecret(backend, context, old);
    try {
      const fresh = await wrapSecret(backend, context, secret);
      await store.write({ [WRAPPED_FILE]: Buffer.from(formatEnvelope(fresh)) });
      return `${store.where}: rewrapped the master secret from KMS key ${old.keyId} to ${fresh.keyId}; the master secret (and every volume's key) is unchanged\n`;
    } finally {
      secret.fill(0);
    }
  });
}

export interface KekCommand {
  readonly target: KmsTarget;
  /** NAMESPACE/NAME of a Secret, or a directory. */
  readonly store: { readonly kind: "secret"; readonly ref: string; readonly kubeconfig: string | undefined } | { readonly kind: "dir"; readonly dir: string };
  readonly force: boolean;
}

/** The command line of `cloak keys wrap|rewrap`; InvalidArgumentError for a person to read. */
export function parseKekArgs(verb: "wrap" | "rewrap", argv: readonly string[]): KekCommand {
  const { values, positionals } = guard(() =>
    parseArgs({
      args: [...argv],
      allowPositionals: true,
      strict: true,
      options: {
        ...KMS_TARGET_OPTIONS,
        secret: { type: "string" },
        kubeconfig: { type: "string" },
        ...(verb === "rewrap" ? { force: { type: "boolean", default: false } } : {}),
      },
    }),
  );
  const target = parseKmsTarget(values);
  if (!target) throw new InvalidArgumentError(`${verb} needs --kms and --cluster-id`);
  const ref = values.secret as string | undefined;
  if ((positionals.length === 1) === (ref !== undefined) || positionals.length > 1) {
    throw new InvalidArgumentError(`${verb} takes one directory or --secret NAMESPACE/NAME`);
  }
  const kubeconfig = values.kubeconfig as string | undefined;
  if (ref === undefined && kubeconfig !== undefined) throw new InvalidArgumentError("--kubeconfig goes with --secret");
  return {
    target,
    store: ref !== undefined ? { kind: "secret", ref, kubeconfig } : { kind: "dir", dir: positionals[0] ?? "" },
    force: values.force === true,
  };
}

/** `cloak keys wrap|rewrap …`: exit 0 done, 1 the KMS or the store said no, 2 a bad command line. */
export async function kekMain(verb: "wrap" | "rewrap", argv: readonly string[]): Promise<number> {
  try {
    const command = parseKekArgs(verb, argv);
    const { target, force } = command;
    const store =
      command.store.kind === "secret"
        ? await (await import("./secret-store.js")).secretStore(command.store.ref, command.store.kubeconfig)
        : directoryStore(command.store.dir);
    const message = verb === "wrap" ? await keysWrap({ store, target }) : await keysRewrap({ store, target, force });
    process.stdout.write(message);
    return 0;
  } catch (err) {
    if (err instanceof InvalidArgumentError) {
      process.stderr.write(`cloak keys ${verb}: ${err.message}\n`);
      return 2;
    }
    if (err instanceof CloakError || err instanceof KeyMaterialError) {
      process.stderr.write(`cloak keys ${verb}: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
}

function guard<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}
