/**
 * What each piece of a GetDataKey costs the key service, measured in process: the code the
 * service runs per request, called in a loop, CPU time per call (process.cpuUsage, all
 * threads). Unlike the end-to-end figures this hardly moves with the shared machine's load,
 * which is why the benchmark reports both. Prints one JSON line: { name: µs per call }.
 *
 *   derive        HKDF-SHA256 with the master secret as a KeyObject (the baseline does it too)
 *   audit         one audit line through the service's logger and batched destination
 *   metrics       the per-request counter and histogram
 *   allow-list    matching the caller's certificate identity
 *   token         a node token's cached review (hash + lookup)
 *   authorize     the caller check and the key decision with 10 000 PVs and 20 000 pods cached
 */
import { randomUUID } from "node:crypto";
import { pino } from "pino";
import { deriveDataKey, masterKeyObject } from "../../lib/data-key.js";
import { KEY_ID_CONTEXT_KEY } from "../../lib/key-lineage.js";
import { createLogger } from "../../lib/log.js";
import { compileAllowList } from "../../keyservice/authz.js";
import { createAuthorizer } from "../../keyservice/authz/authorizer.js";
import { ClusterView } from "../../keyservice/authz/cluster-view.js";
import { projectKey, projectPod, projectPv, projectPvc } from "../../keyservice/authz/projections.js";
import { TokenVerifier } from "../../keyservice/authz/tokens.js";
import { LineBatcher } from "../../keyservice/log-batch.js";
import { KeyServiceMetrics } from "../../keyservice/metrics.js";
import { intFromEnv } from "../lib/params.js";

const ITERATIONS = intFromEnv("CLOAK_BENCH_KEYSERVICE_ITERATIONS", 200_000);
const VOLUMES = intFromEnv("CLOAK_BENCH_KEYSERVICE_VOLUMES", 10_000);
const PODS = intFromEnv("CLOAK_BENCH_KEYSERVICE_PODS", 20_000);
const NODES = intFromEnv("CLOAK_BENCH_KEYSERVICE_NODES", 100);
const NODE_SA = "cloak-system/cloak-csi-node";

/** CPU µs per call of `fn`, after a warm-up; `fn` may return a promise (awaited in sequence). */
async function measure(fn: (i: number) => unknown, iterations = ITERATIONS): Promise<number> {
  for (let i = 0; i < Math.min(20_000, iterations); i++) await fn(i);
  const before = process.cpuUsage();
  for (let i = 0; i < iterations; i++) {
    const r = fn(i);
    if (r instanceof Promise) await r;
  }
  const used = process.cpuUsage(before);
  return (used.user + used.system) / iterations;
}

async function main(): Promise<void> {
  const out: Record<string, number> = {};
  const master = masterKeyObject(Buffer.alloc(32, 7));
  const salt = Buffer.alloc(32, 9);
  const ids = Array.from({ length: 4096 }, (_, i) => `bench-${i}`);
  out["derive"] = await measure((i) => deriveDataKey(master, salt, ids[i % ids.length] ?? "", 32));

  // The audit logger exactly as keyservice/main.ts builds it, writing to /dev/null.
  const stream = pino.destination({ dest: "/dev/null", sync: false });
  const destination = new LineBatcher(stream, { maxBytes: 16_384, maxDelayMs: 200 });
  const audit = createLogger({ component: "keyservice", destination, redact: false }).child({ audit: true });
  out["audit"] = await measure((i) =>
    audit.info(
      {
        client: "spiffe://cloak/ns/cloak-system/sa/cloak-csi-node",
        peer: "10.0.3.7:47780",
        node: "node-17",
        pod: "cloak-system/cloak-csi-node-x7k2p",
        data_key_id: ids[i % ids.length],
        length: 32,
        result: "OK",
        ms: 0.21,
        via: "pod apps/web-0 uses claim apps/data-web-0 bound to pvc-0d7ad1a3",
        reason: undefined,
      },
      "GetDataKey",
    ),
  );
  destination.close();

  const metrics = new KeyServiceMetrics();
  out["metrics"] = await measure((i) => metrics.observe("OK", (i % 100) / 1e5));

  const allow = compileAllowList(["spiffe://cloak/ns/cloak-system/sa/cloak-csi-node"]);
  const identity = { uris: ["spiffe://cloak/ns/cloak-system/sa/cloak-csi-node"], dnsNames: [] };
  out["allow-list"] = await measure(() => allow.match(identity));

  // The caches at the benchmark's size, filled through the real projections.
  const view = new ClusterView();
  const keys = Array.from({ length: VOLUMES }, () => randomUUID());
  const node = (j: number) => `bench-n-${j % NODES}`;
  const fill = <P>(sink: { replace(items: Map<string, P>): void }, entries: [string, P | undefined][]) =>
    sink.replace(new Map(entries.filter((e): e is [string, P] => e[1] !== undefined)));
  fill(view.keySink, keys.map((k, j) => [k, projectKey({ metadata: { name: k }, spec: { driver: "csi.cloak.dev", volumes: [`vol-${j}`] } })]));
  fill(
    view.pvSink,
    keys.map((k, j) => [
      `pv-${j}`,
      projectPv(
        { metadata: { name: `pv-${j}` }, spec: { claimRef: { namespace: "apps", name: `claim-${j}` }, csi: { driver: "csi.cloak.dev", volumeHandle: `vol-${j}`, volumeAttributes: { [KEY_ID_CONTEXT_KEY]: k } } } },
        new Set(["csi.cloak.dev"]),
      ),
    ]),
  );
  fill(view.claimSink, keys.map((_, j) => [`apps/claim-${j}`, projectPvc({ spec: { volumeName: `pv-${j}` } })]));
  const pods: [string, ReturnType<typeof projectPod>][] = [];
  for (let k = 0; k < PODS; k++) {
    const j = k % VOLUMES;
    pods.push([`apps/app-${k}`, projectPod({ metadata: { namespace: "apps", name: `app-${k}`, uid: `u-${k}` }, spec: { nodeName: node(j), volumes: [{ name: "d", persistentVolumeClaim: { claimName: `claim-${j}` } }] } }, NODE_SA)]);
  }
  for (let n = 0; n < NODES; n++) {
    pods.push([`cloak-system/csi-${n}`, projectPod({ metadata: { namespace: "cloak-system", name: `csi-${n}`, uid: `csi-u-${n}` }, spec: { nodeName: `bench-n-${n}`, serviceAccountName: "cloak-csi-node" } }, NODE_SA)]);
  }
  fill(view.podSink, pods);
  const tokens = Array.from({ length: 16 }, (_, n) => `header.${Buffer.from(JSON.stringify({ n, exp: 4_000_000_000 })).toString("base64url")}.${"s".repeat(342)}`);
  const verifier = new TokenVerifier({
    audience: "cloak-keyservice",
    review: (token) => {
      const n = Number((JSON.parse(Buffer.from(token.split(".")[1] ?? "", "base64url").toString()) as { n: number }).n);
      return Promise.resolve({ ok: true, caller: { serviceAccount: NODE_SA, podName: `csi-${n}`, podUid: `csi-u-${n}`, node: `bench-n-${n}` }, expiresAt: 4_000_000_000_000 });
    },
  });
  for (const t of tokens) await verifier.verify(t);
  out["token"] = await measure((i) => verifier.verify(tokens[i % tokens.length] ?? ""));
  const authz = createAuthorizer({ view, verifier, nodeServiceAccount: NODE_SA, graceMs: 0 });
  // Each node asks for the keys of its own volumes (volume j is on node j % NODES), all allowed.
  const requests = Array.from({ length: 4096 }, (_, i) => {
    const n = i % 16;
    const j = n + NODES * Math.floor(i / 16) % VOLUMES;
    return { token: tokens[n] ?? "", keyId: keys[j % VOLUMES] ?? "" };
  });
  let refused = 0;
  out["authorize"] = await measure(async (i) => {
    const r = requests[i % requests.length];
    if (!r) return;
    try {
      const who = await authz.identify(r.token);
      await authz.authorize(who, r.keyId);
    } catch {
      refused++;
    }
  });
  if (refused > 0) throw new Error(`${refused} of the authorisation benchmark's requests were refused: it measured the wrong path`);
  const heap = process.memoryUsage();
  process.stdout.write(`${JSON.stringify({ microsecondsPerCall: out, iterations: ITERATIONS, heapUsedMb: heap.heapUsed / 1048576, rssMb: heap.rss / 1048576 })}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`components: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
