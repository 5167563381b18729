import { randomBytes } from "node:crypto";
import { lstat, mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { parseArgs, type ParseArgsOptionsConfig } from "node:util";
import { writeFileAtomic } from "../lib/atomic-file.js";
import { WRAPPED_FILE } from "./kek/envelope.js";
import { KEK_HELP, KEK_SYNOPSIS, kekMain, KMS_TARGET_OPTIONS, parseKmsTarget, wrapNewSecret, type KmsTarget } from "./kek/commands.js";
import {
  createCertificateAuthority,
  issueClientCertificate,
  issueServerCertificate,
  loadCertificateAuthority,
  parseClientName,
  validityDays,
  type CertificateAuthority,
  type ClientName,
} from "./pki.js";

/**
 * `cloak keys`: makes the files the key service and its clients need.
 *
 *   <dir>/master-secret, <dir>/salt          0400  (the Secret the key service mounts; also what
 *                                                   the node plugin's file key source reads)
 *   <dir>/ca/ca.crt 0644, ca/ca.key 0400           (keep ca.key offline after issuing)
 *   <dir>/server/{tls.crt,tls.key,ca.crt}          (a kubernetes.io/tls-shaped Secret)
 *   <dir>/clients/<name>/{tls.crt,tls.key,ca.crt}  (one per client identity)
 *
 * Directories are 0700 and private keys and secrets 0400: nothing secret is ever readable by
 * other users, and files are written to a temporary name and renamed, so a reader (the key
 * service polling its certificate) never sees half a file.
 */
export const KEYS_USAGE = `usage:
  cloak keys init <dir> [--client [NAME=]IDENTITY]... [server options] [--days N] [--ca-days N]
                        [--overwrite-master-secret] [--kms unix:///PATH --cluster-id ID]
  cloak keys issue <dir> (--client [NAME=]IDENTITY | --server [server options]) [--days N]
${KEK_SYNOPSIS}
init   generates a master secret, a salt, a CA, a server certificate and a client certificate
       per --client (default: csi-node=${"spiffe://cloak/ns/cloak-system/sa/cloak-csi-node"}).
       It refuses to replace an existing master secret or salt: every volume's key derives from
       them, so losing them loses every volume. --overwrite-master-secret says you mean it.
       With --kms it writes only the wrapped master secret (${WRAPPED_FILE}), never the plain one.
issue  issues a new server or client certificate with the CA in <dir>/ca (rotation, new clients).
${KEK_HELP}
IDENTITY is a URI (spiffe://trust-domain/path) or a DNS name; NAME names its directory under
clients/ (default: the URI's last path segment or the DNS name's first label).

server options:
  --service NAME     Service name (default cloak-keyservice)
  --namespace NS     its namespace (default cloak-system)
  --dns NAME         an extra DNS name (repeatable)
  --ip ADDRESS       an IP address (repeatable)
  --days N           certificate lifetime in days (default 365); --ca-days for the CA (default 3650)
`;

export const DEFAULT_CLIENT = "csi-node=spiffe://cloak/ns/cloak-system/sa/cloak-csi-node";
const SECRET_BYTES = 32;

export class KeysCommandError extends Error {}

export async function main(argv: string[]): Promise<number> {
  const [verb, ...rest] = argv;
  if (verb === undefined) {
    process.stderr.write(KEYS_USAGE);
    return 2;
  }
  if (["--help", "-h", "help"].includes(verb) || rest.includes("--help") || rest.includes("-h")) {
    process.stdout.write(KEYS_USAGE);
    return 0;
  }
  try {
    if (verb === "init") {
      const written = await keysInit(parseInitArgs(rest));
      process.stdout.write(summary(written));
      return 0;
    }
    if (verb === "wrap" || verb === "rewrap") return await kekMain(verb, rest);
    if (verb === "issue") {
      const written = await keysIssue(parseIssueArgs(rest));
      process.stdout.write(summary(written));
      return 0;
    }
    throw new KeysCommandError(`unknown subcommand ${JSON.stringify(verb)}`);
  } catch (err) {
    if (!(err instanceof KeysCommandError)) throw err;
    process.stderr.write(`cloak keys: ${err.message}\n`);
    return 2;
  }
}

export interface ServerNames {
  readonly service: string;
  readonly namespace: string;
  readonly extraDns: readonly string[];
  readonly ips: readonly string[];
}

export interface NamedClient {
  readonly name: string;
  readonly identity: ClientName;
}

export interface KeysInitOptions {
  readonly dir: string;
  readonly clients: readonly NamedClient[];
  readonly server: ServerNames;
  readonly days: number;
  readonly caDays: number;
  readonly overwriteMasterSecret: boolean;
  /** Write the master secret only wrapped, by this KMS v2 plugin. */
  readonly kms?: KmsTarget | undefined;
}

/** What a command wrote: paths, and the identities the key service must --allow. */
export interface Written {
  readonly files: string[];
  readonly identities: string[];
}

export async function keysInit(options: KeysInitOptions): Promise<Written> {
  const { dir } = options;
  await mkdir(dir, { recursive: true, mode: 0o700 });
  for (const file of ["master-secret", WRAPPED_FILE, "salt"]) {
    if ((await exists(join(dir, file))) && !options.overwriteMasterSecret) {
      throw new KeysCommandError(
        `${join(dir, file)} exists. Every volume's key is derived from the master secret and salt: ` +
          `replacing them makes every existing volume unreadable. To renew certificates use ` +
          `\`cloak keys issue\`; to really start over, pass --overwrite-master-secret.`,
      );
    }
  }
  const files: string[] = [];
  const put = async (path: string, data: string | Buffer, mode: number): Promise<void> => {
    await writePrivately(path, data, mode);
    files.push(path);
  };
  const secret = randomBytes(SECRET_BYTES);
  const salt = randomBytes(SECRET_BYTES);
  try {
    if (options.kms) {
      // Wrapped (and verified) before anything is written: the plain secret never touches disk.
      await put(join(dir, WRAPPED_FILE), await wrapKms(options.kms, secret), 0o400);
    } else {
      await put(join(dir, "master-secret"), secret, 0o400);
    }
    await put(join(dir, "salt"), salt, 0o400);
  } finally {
    secret.fill(0);
    salt.fill(0);
  }
  const ca = await createCertificateAuthority({ commonName: "cloak key service CA", validity: validityDays(options.caDays) });
  await put(join(dir, "ca", "ca.crt"), ca.certPem, 0o644);
  await put(join(dir, "ca", "ca.key"), ca.keyPem, 0o400);
  files.push(...(await writeServer(dir, ca, options.server, options.days)));
  const identities: string[] = [];
  for (const client of options.clients) {
    files.push(...(await writeClient(dir, ca, client, options.days)));
    identities.push(client.identity.value);
  }
  return { files, identities };
}

export interface KeysIssueOptions {
  readonly dir: string;
  readonly target: { kind: "server"; names: ServerNames } | { kind: "client"; client: NamedClient };
  readonly days: number;
}

export async function keysIssue(options: KeysIssueOptions): Promise<Written> {
  const { dir, target } = options;
  let ca: CertificateAuthority;
  try {
    ca = await loadCertificateAuthority(
      await readFile(join(dir, "ca", "ca.crt"), "utf8"),
      await readFile(join(dir, "ca", "ca.key"), "utf8"),
    );
  } catch (err) {
    throw new KeysCommandError(`cannot load the CA from ${join(dir, "ca")}: ${(err as Error).message}`);
  }
  if (target.kind === "server") return { files: await writeServer(dir, ca, target.names, options.days), identities: [] };
  return { files: await writeClient(dir, ca, target.client, options.days), identities: [target.client.identity.value] };
}

export function serverDnsNames(names: ServerNames): string[] {
  const { service, namespace } = names;
  const base = [service, `${service}.${namespace}`, `${service}.${namespace}.svc`, `${service}.${namespace}.svc.cluster.local`];
  return [...new Set([...base, ...names.extraDns])];
}

async function writeServer(dir: string, ca: CertificateAuthority, names: ServerNames, days: number): Promise<string[]> {
  const issued = await issueServerCertificate({ ca, dnsNames: serverDnsNames(names), ipAddresses: names.ips, validity: validityDays(days) });
  return writeTlsDir(join(dir, "server"), ca, issued.certPem, issued.keyPem);
}

async function writeClient(dir: string, ca: CertificateAuthority, client: NamedClient, days: number): Promise<string[]> {
  const issued = await issueClientCertificate({ ca, name: client.identity, validity: validityDays(days) });
  return writeTlsDir(join(dir, "clients", client.name), ca, issued.certPem, issued.keyPem);
}

/** tls.crt, tls.key, ca.crt: the layout of a cert-manager Secret, so either can be mounted. */
async function writeTlsDir(dir: string, ca: CertificateAuthority, certPem: string, keyPem: string): Promise<string[]> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  // The key first: a poller that sees the new certificate already finds its key beside it.
  await writePrivately(join(dir, "tls.key"), keyPem, 0o400);
  await writePrivately(join(dir, "tls.crt"), certPem, 0o644);
  await writePrivately(join(dir, "ca.crt"), ca.certPem, 0o644);
  return [join(dir, "tls.key"), join(dir, "tls.crt"), join(dir, "ca.crt")];
}

/** Created with the final mode (never wider), fsynced, renamed into place, directory fsynced. */
function writePrivately(path: string, data: string | Buffer, mode: number): Promise<void> {
  return writeFileAtomic(path, data, { mode });
}

async function wrapKms(target: KmsTarget, secret: Buffer): Promise<string> {
  try {
    return await wrapNewSecret(target, secret);
  } catch (err) {
    throw new KeysCommandError(`cannot wrap the new master secret with the KMS at ${target.endpoint}: ${(err as Error).message}`);
  }
}

async function exists(path: string): Promise<boolean> {
  return lstat(path).then(
    () => true,
    () => false,
  );
}

export function parseNamedClient(text: string): NamedClient {
  const eq = text.indexOf("=");
  const hasName = eq > 0 && !text.slice(0, eq).includes(":");
  const identityText = hasName ? text.slice(eq + 1) : text;
  let identity: ClientName;
  try {
    identity = parseClientName(identityText);
  } catch (err) {
    throw new KeysCommandError((err as Error).message);
  }
  const name = hasName ? text.slice(0, eq) : defaultClientName(identity);
  if (!/^[a-z0-9][a-z0-9._-]{0,62}$/i.test(name) || name === "." || name === "..") {
    throw new KeysCommandError(`client name ${JSON.stringify(name)} must be 1-63 of [A-Za-z0-9._-]`);
  }
  return { name, identity };
}

function defaultClientName(identity: ClientName): string {
  if (identity.kind === "dns") return identity.value.split(".")[0] ?? identity.value;
  const path = new URL(identity.value).pathname.split("/").filter((p) => p !== "");
  return path.at(-1) ?? new URL(identity.value).hostname;
}

const SERVER_OPTIONS = {
  service: { type: "string", default: "cloak-keyservice" },
  namespace: { type: "string", default: "cloak-system" },
  dns: { type: "string", multiple: true, default: [] as string[] },
  ip: { type: "string", multiple: true, default: [] as string[] },
  days: { type: "string", default: "365" },
} satisfies ParseArgsOptionsConfig;

export function parseInitArgs(argv: readonly string[]): KeysInitOptions {
  const { values, positionals } = guard(() =>
    parseArgs({
      args: [...argv],
      allowPositionals: true,
      strict: true,
      options: {
        ...SERVER_OPTIONS,
        client: { type: "string", multiple: true, default: [] as string[] },
        "ca-days": { type: "string", default: "3650" },
        "overwrite-master-secret": { type: "boolean", default: false },
        ...KMS_TARGET_OPTIONS,
      },
    }),
  );
  const dir = onlyDir(positionals, "init");
  const clientTexts = values.client.length > 0 ? values.client : [DEFAULT_CLIENT];
  const clients = clientTexts.map(parseNamedClient);
  const names = new Set<string>();
  for (const c of clients) {
    if (names.has(c.name)) throw new KeysCommandError(`two clients are named ${c.name}; name them with NAME=IDENTITY`);
    names.add(c.name);
  }
  return {
    dir,
    clients,
    server: serverNames(values),
    days: days(values.days, "--days"),
    caDays: days(values["ca-days"], "--ca-days"),
    overwriteMasterSecret: values["overwrite-master-secret"],
    kms: guard(() => parseKmsTarget(values)),
  };
}

export function parseIssueArgs(argv: readonly string[]): KeysIssueOptions {
  const { values, positionals } = guard(() =>
    parseArgs({
      args: [...argv],
      allowPositionals: true,
      strict: true,
      options: { ...SERVER_OPTIONS, client: { type: "string" }, server: { type: "boolean", default: false } },
    }),
  );
  const dir = onlyDir(positionals, "issue");
  if (values.server === (values.client !== undefined)) throw new KeysCommandError("issue needs exactly one of --server or --client");
  const target: KeysIssueOptions["target"] =
    values.client !== undefined ? { kind: "client", client: parseNamedClient(values.client) } : { kind: "server", names: serverNames(values) };
  return { dir, target, days: days(values.days, "--days") };
}

/** parseArgs' own messages ("Unknown option '--x'") are good; they just need our error type. */
function guard<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw new KeysCommandError((err as Error).message);
  }
}

function onlyDir(positionals: string[], verb: string): string {
  if (positionals.length !== 1 || !positionals[0]) throw new KeysCommandError(`${verb} takes exactly one directory`);
  return positionals[0];
}

function serverNames(values: { service: string; namespace: string; dns: string[]; ip: string[] }): ServerNames {
  return { service: values.service, namespace: values.namespace, extraDns: values.dns, ips: values.ip };
}

function days(text: string, flag: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1 || n > 36500) throw new KeysCommandError(`${flag} must be a whole number of days (1..36500)`);
  return n;
}

function summary(written: Written): string {
  const lines = written.files.map((f) => `  ${f}`);
  const allow = written.identities.map((id) => `  --allow ${id}`);
  return `wrote:\n${lines.join("\n")}\n${allow.length > 0 ? `\nthe key service admits these clients with:\n${allow.join("\n")}\n` : ""}`;
}
