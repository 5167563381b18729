import { KubeConfig, CoreV1Api, RbacAuthorizationV1Api } from "@kubernetes/client-node";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { request, type RequestOptions } from "node:https";
import { createServer, connect, type Server, type AddressInfo } from "node:net";
import { join } from "node:path";
import { stringify } from "yaml";
import { createRunner, type Runner } from "../../lib/exec.js";
import { createLogger } from "../../lib/log.js";
import { packageRoot } from "../../lib/paths.js";
import { Daemon } from "../netns/daemon.js";
import { scaled } from "../netns/timing.js";
import { splice } from "./splice.js";
import { ensureCa, ensureLeaf, ensureServiceAccountKey, type Pem } from "./certs.js";

/**
 * A real kube-apiserver (built from k8s.io/kubernetes by test/apiserver/build.sh) on a real
 * etcd, with generated certificates, RBAC on and service-account tokens working. Reusable:
 *
 *   const api = await startApiServer({ dir, netns: "cloak-nd-api", address: "192.0.2.100" });
 *   api.adminClient.makeApiClient(CoreV1Api) ...      // this process, as system:masters
 *   await api.userKubeconfig({ user: "netd", server: api.url })  // a kubeconfig for inside
 *   await api.stopApiServer(); await api.startApiServerAgain();  // "the API server goes away"
 *   await api.stop();
 *
 * With `netns`, etcd and the API server run inside that namespace (listening on `address`)
 * and this process reaches them through a relay (a unix socket), so no test traffic touches
 * this machine's interfaces. Without it, both listen on 127.0.0.1 on free ports.
 */

export interface ApiServerOptions {
  /** Certificates, etcd data, kubeconfigs and logs. Reused when it already holds them. */
  readonly dir: string;
  readonly netns?: string;
  /** The address the API server serves on (inside `netns`); default 127.0.0.1. */
  readonly address?: string;
  /** Default 6443 inside a namespace, a free port otherwise. */
  readonly port?: number;
  /** Virtual service range (never on the wire); default 203.0.113.0/24 (TEST-NET-3). */
  readonly serviceCIDR?: string;
  readonly runner?: Runner;
  /** Extra kube-apiserver flags. */
  readonly extraArgs?: readonly string[];
  /** --authorization-mode (a list flag: extraArgs would add to it, not replace it); default RBAC. */
  readonly authorizationModes?: readonly string[];
  /**
   * An EncryptionConfiguration (apiserver.config.k8s.io/v1) for data at rest, written to the
   * directory and passed as --encryption-provider-config (e.g. a KMS v2 plugin for secrets).
   */
  readonly encryptionConfig?: Readonly<Record<string, unknown>>;
}

export interface ApiServer {
  /** The URL clients in the testbed use: https://<address>:<port>. */
  readonly url: string;
  /** The URL this process uses (the relay when in a namespace). */
  readonly hostUrl: string;
  readonly caFile: string;
  /** system:masters, for this process. */
  readonly kubeconfigPath: string;
  readonly adminClient: KubeConfig;
  readonly binaries: Binaries;
  /** etcd's client URL and a client certificate for it, to look at what is stored raw (from this process only without `netns`). */
  readonly etcd: { readonly url: string; readonly caFile: string; readonly certFile: string; readonly keyFile: string };
  /** A kubeconfig authenticating with a client certificate for `user` (and `groups`). */
  userKubeconfig(o: { user: string; groups?: readonly string[]; server?: string }): Promise<string>;
  /** A token for a service account (created if missing) from the TokenRequest API. */
  serviceAccountToken(o: { namespace: string; name: string; expirationSeconds?: number }): Promise<string>;
  /** A kubeconfig that authenticates as that service account. */
  serviceAccountKubeconfig(o: { namespace: string; name: string; server?: string }): Promise<string>;
  /** A ClusterRole with `rules` bound to a user or a service account. */
  grantClusterRole(o: { name: string; rules: RbacRule[]; user?: string; serviceAccount?: { namespace: string; name: string } }): Promise<void>;
  /** Kills the API server only (etcd keeps the data): clients see it go away. */
  stopApiServer(): Promise<void>;
  startApiServerAgain(): Promise<void>;
  stop(): Promise<void>;
}

export interface RbacRule {
  readonly apiGroups: string[];
  readonly resources: string[];
  readonly verbs: string[];
}

export interface Binaries {
  readonly kubeApiserver: string;
  readonly etcd: string;
  readonly kubectl: string;
}

/** Builds (or finds cached) kube-apiserver and etcd; `kubectl: true` also builds kubectl. */
export async function ensureBinaries(runner: Runner, o: { kubectl?: boolean } = {}): Promise<Binaries> {
  const script = join(packageRoot(), "test/apiserver/build.sh");
  await runner({ file: script, args: o.kubectl ? ["kubectl"] : [], timeoutMs: 60 * 60_000 });
  const paths = Object.fromEntries(
    (await runner({ file: script, args: ["--print-paths"] })).stdout
      .trim()
      .split("\n")
      .map((l) => l.split("=") as [string, string]),
  );
  return { kubeApiserver: paths["KUBE_APISERVER"] ?? "", etcd: paths["ETCD"] ?? "", kubectl: paths["KUBECTL"] ?? "" };
}

export async function startApiServer(o: ApiServerOptions): Promise<ApiServer> {
  const runner = o.runner ?? createRunner({ logger: createLogger({ component: "apiserver-harness", level: "warn" }) });
  const binaries = await ensureBinaries(runner);
  const dir = o.dir;
  const pki = join(dir, "pki");
  await mkdir(pki, { recursive: true });
  const address = o.address ?? "127.0.0.1";
  const inNetns = o.netns !== undefined;
  const port = o.port ?? (inNetns ? 6443 : await freePort());
  const etcdPort = inNetns ? 2379 : await freePort();
  const etcdPeerPort = inNetns ? 2380 : await freePort();
  const serviceCIDR = o.serviceCIDR ?? "203.0.113.0/24";
  const serviceIP = serviceCIDR.replace(/\.0\/\d+$/, ".1");

  const ca = await ensureCa(runner, pki);
  const serving = await ensureLeaf(runner, pki, ca, {
    name: "apiserver",
    commonName: "kube-apiserver",
    dnsNames: ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"],
    ips: [...new Set([address, "127.0.0.1", serviceIP])],
    usage: "server",
  });
  const etcdServing = await ensureLeaf(runner, pki, ca, { name: "etcd", commonName: "etcd", ips: ["127.0.0.1"], dnsNames: ["localhost"], usage: "both" });
  const etcdClient = await ensureLeaf(runner, pki, ca, { name: "apiserver-etcd-client", commonName: "kube-apiserver-etcd-client", usage: "client" });
  const admin = await ensureLeaf(runner, pki, ca, { name: "admin", commonName: "cloak-test-admin", organizations: ["system:masters"], usage: "client" });
  const sa = await ensureServiceAccountKey(runner, pki);

  const etcd = new Daemon({
    name: "etcd",
    ...(o.netns ? { netns: o.netns } : {}),
    logFile: join(dir, "etcd.log"),
    argv: [
      binaries.etcd,
      "--name=cloak-test",
      `--data-dir=${join(dir, "etcd-data")}`,
      `--listen-client-urls=https://127.0.0.1:${etcdPort}`,
      `--advertise-client-urls=https://127.0.0.1:${etcdPort}`,
      `--listen-peer-urls=http://127.0.0.1:${etcdPeerPort}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${etcdPeerPort}`,
      `--initial-cluster=cloak-test=http://127.0.0.1:${etcdPeerPort}`,
      `--cert-file=${etcdServing.cert}`,
      `--key-file=${etcdServing.key}`,
      `--trusted-ca-file=${ca.cert}`,
      "--client-cert-auth",
      // Test data: durability across power loss is not worth an fsync per write here.
      "--unsafe-no-fsync",
      "--log-level=info",
    ],
  });
  await etcd.waitForOutput((out) => /serving client traffic securely|ready to serve client requests/i.test(out), scaled(60_000)).catch(async (err: unknown) => {
    await etcd.stop("SIGKILL");
    throw err;
  });

  let encryptionArgs: string[] = [];
  if (o.encryptionConfig) {
    const file = join(dir, "encryption-config.yaml");
    await writeFile(file, stringify(o.encryptionConfig), { mode: 0o600 });
    encryptionArgs = [`--encryption-provider-config=${file}`];
  }
  const apiserverArgs = [
    binaries.kubeApiserver,
    `--etcd-servers=https://127.0.0.1:${etcdPort}`,
    `--etcd-cafile=${ca.cert}`,
    `--etcd-certfile=${etcdClient.cert}`,
    `--etcd-keyfile=${etcdClient.key}`,
    `--bind-address=${address}`,
    `--advertise-address=${address}`,
    `--secure-port=${port}`,
    `--tls-cert-file=${serving.cert}`,
    `--tls-private-key-file=${serving.key}`,
    `--client-ca-file=${ca.cert}`,
    `--service-cluster-ip-range=${serviceCIDR}`,
    "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
    `--service-account-key-file=${sa.pub}`,
    `--service-account-signing-key-file=${sa.key}`,
    `--authorization-mode=${(o.authorizationModes ?? ["RBAC"]).join(",")}`,
    "--allow-privileged=true",
    `--cert-dir=${join(dir, "cert-dir")}`,
    "--v=1",
    ...encryptionArgs,
    ...(o.extraArgs ?? []),
  ];
  const apiLog = join(dir, "kube-apiserver.log");
  const startDaemon = () => new Daemon({ name: "kube-apiserver", ...(o.netns ? { netns: o.netns } : {}), logFile: apiLog, argv: apiserverArgs });
  let apiserver = startDaemon();

  let relay: Daemon | undefined;
  let relayServer: Server | undefined;
  let hostUrl = `https://${address.includes(":") ? `[${address}]` : address}:${port}`;
  const url = hostUrl;
  const stopAll = async () => {
    relayServer?.close();
    await relay?.stop();
    // Killed, not drained: the data is in etcd, and a graceful stop costs seconds per test.
    await apiserver.stop("SIGKILL");
    await etcd.stop();
  };
  try {
    if (o.netns) {
      const socketPath = join(dir, "apiserver.sock");
      relay = new Daemon({
        name: "apiserver-relay",
        netns: o.netns,
        logFile: join(dir, "relay.log"),
        argv: [process.execPath, join(packageRoot(), "dist/test/apiserver/relay.js"), socketPath, address, String(port)],
      });
      await relay.waitForOutput((out) => out.includes("ready"), scaled(30_000));
      relayServer = createServer((client) => splice(client, connect(socketPath)));
      await new Promise<void>((resolve) => relayServer?.listen(0, "127.0.0.1", resolve));
      hostUrl = `https://127.0.0.1:${(relayServer.address() as AddressInfo).port}`;
    }
  } catch (err) {
    await stopAll();
    throw err;
  }

  const kubeconfigPath = join(dir, "admin.kubeconfig");
  await writeKubeconfig(kubeconfigPath, { server: hostUrl, caFile: ca.cert, user: "admin", auth: { cert: admin } });
  const adminClient = new KubeConfig();
  adminClient.loadFromFile(kubeconfigPath);

  const waitReady = async () => {
    const deadline = Date.now() + scaled(120_000);
    for (;;) {
      try {
        // /readyz is 200 only once every post-start hook (RBAC bootstrap roles among them) ran.
        if ((await getPath(adminClient, "/readyz")) === 200) return;
      } catch (err) {
        if (!apiserver.running) throw new Error(`kube-apiserver exited:\n${apiserver.stdout.slice(-4000)}`, { cause: err });
        if (Date.now() > deadline) throw new Error(`kube-apiserver not ready after ${scaled(120)} s:\n${apiserver.stdout.slice(-4000)}`, { cause: err });
      }
      await new Promise((r) => setTimeout(r, 250));
    }
  };
  try {
    await waitReady();
  } catch (err) {
    await stopAll();
    throw err;
  }

  let users = 0;
  const server: ApiServer = {
    url,
    hostUrl,
    caFile: ca.cert,
    kubeconfigPath,
    adminClient,
    binaries,
    etcd: { url: `https://127.0.0.1:${etcdPort}`, caFile: ca.cert, certFile: etcdClient.cert, keyFile: etcdClient.key },
    userKubeconfig: async ({ user, groups, server: s }) => {
      const pem = await ensureLeaf(runner, pki, ca, {
        name: `user-${user.replace(/[^A-Za-z0-9_.-]/g, "_")}-${users++}`,
        commonName: user,
        organizations: groups ?? [],
        usage: "client",
      });
      const path = join(dir, `${user.replace(/[^A-Za-z0-9_.-]/g, "_")}.kubeconfig`);
      await writeKubeconfig(path, { server: s ?? hostUrl, caFile: ca.cert, user, auth: { cert: pem } });
      return path;
    },
    serviceAccountToken: async ({ namespace, name, expirationSeconds }) => {
      const core = adminClient.makeApiClient(CoreV1Api);
      try {
        await core.createNamespacedServiceAccount({ namespace, body: { metadata: { name } } });
      } catch (err) {
        if ((err as { code?: number }).code !== 409) throw err;
      }
      const res = await core.createNamespacedServiceAccountToken({
        namespace,
        name,
        body: { spec: { audiences: [], expirationSeconds: expirationSeconds ?? 3600 } },
      });
      return res.status?.token ?? "";
    },
    serviceAccountKubeconfig: async ({ namespace, name, server: s }) => {
      const token = await server.serviceAccountToken({ namespace, name });
      const path = join(dir, `sa-${namespace}-${name}.kubeconfig`);
      await writeKubeconfig(path, { server: s ?? hostUrl, caFile: ca.cert, user: `${namespace}:${name}`, auth: { token } });
      return path;
    },
    grantClusterRole: async ({ name, rules, user, serviceAccount }) => {
      const rbac = adminClient.makeApiClient(RbacAuthorizationV1Api);
      await rbac.createClusterRole({ body: { metadata: { name }, rules } });
      const subjects = [
        ...(user ? [{ kind: "User", name: user, apiGroup: "rbac.authorization.k8s.io" }] : []),
        ...(serviceAccount ? [{ kind: "ServiceAccount", name: serviceAccount.name, namespace: serviceAccount.namespace }] : []),
      ];
      await rbac.createClusterRoleBinding({
        body: { metadata: { name }, roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name }, subjects },
      });
    },
    stopApiServer: async () => {
      await apiserver.stop("SIGKILL");
    },
    startApiServerAgain: async () => {
      if (apiserver.running) return;
      apiserver = startDaemon();
      await waitReady();
    },
    stop: stopAll,
  };
  return server;
}

async function writeKubeconfig(
  path: string,
  o: { server: string; caFile: string; user: string; auth: { cert: Pem } | { token: string } },
): Promise<void> {
  const user =
    "cert" in o.auth
      ? { "client-certificate-data": await b64(o.auth.cert.cert), "client-key-data": await b64(o.auth.cert.key) }
      : { token: o.auth.token };
  const doc = {
    apiVersion: "v1",
    kind: "Config",
    clusters: [{ name: "cloak-test", cluster: { server: o.server, "certificate-authority-data": await b64(o.caFile) } }],
    users: [{ name: o.user, user }],
    contexts: [{ name: "cloak-test", context: { cluster: "cloak-test", user: o.user } }],
    "current-context": "cloak-test",
  };
  await writeFile(path, stringify(doc), { mode: 0o600 });
}

async function b64(path: string): Promise<string> {
  return (await readFile(path)).toString("base64");
}

/** GET a path with the kubeconfig's credentials; resolves with the status code. */
async function getPath(kc: KubeConfig, path: string): Promise<number> {
  const url = new URL(path, kc.getCurrentCluster()?.server);
  const options: RequestOptions = { method: "GET", hostname: url.hostname, port: url.port, path: url.pathname, timeout: 5_000 };
  await kc.applyToHTTPSOptions(options);
  return new Promise((resolve, reject) => {
    const req = request(options, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
    });
    req.on("error", reject);
    req.on("timeout", () => req.destroy(new Error("timed out")));
    req.end();
  });
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}
