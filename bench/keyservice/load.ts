/**
 * Load for one measurement: `concurrency` callers, each with one GetDataKey in flight at a time,
 * on one channel (as the node plugin has one), for a warm-up and then a measured window. Prints
 * one JSON line: completed calls, seconds, latency percentiles in ms, errors.
 *
 * With `--pairs FILE` (JSON `[{ keyId, token }]`) the requests cycle through those key ids,
 * each sent with its node's token as the node plugin sends it; otherwise through 4096 ids
 * without a token.
 */
import { readFile } from "node:fs/promises";
import { parseArgs } from "node:util";
import { credentials, Metadata } from "@grpc/grpc-js";
import { loadProto } from "../../lib/proto.js";
import type { KeyServiceClient } from "../../proto/gen/cloak/keyservice/v1/KeyService.js";
import type { ProtoGrpcType } from "../../proto/gen/keyservice.js";

export interface LoadResult {
  readonly calls: number;
  readonly seconds: number;
  readonly perSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly errors: number;
  /** Every call answered, warm-up included: what the server's audit log should count. */
  readonly answered: number;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      target: { type: "string" },
      ca: { type: "string" },
      cert: { type: "string" },
      key: { type: "string" },
      concurrency: { type: "string", default: "1" },
      "warmup-ms": { type: "string", default: "1000" },
      "duration-ms": { type: "string", default: "5000" },
      pairs: { type: "string" },
    },
  });
  const { target, ca, cert, key } = values;
  if (!target || !ca || !cert || !key) throw new Error("--target, --ca, --cert and --key are required");
  const KeyService = loadProto<ProtoGrpcType>("keyservice.proto").cloak.keyservice.v1.KeyService;
  const client: KeyServiceClient = new KeyService(
    target,
    credentials.createSsl(await readFile(ca), await readFile(key), await readFile(cert)),
    { "grpc.ssl_target_name_override": "localhost", "grpc.default_authority": "localhost" },
  );
  const concurrency = Number(values.concurrency);
  const warmupMs = Number(values["warmup-ms"]);
  const durationMs = Number(values["duration-ms"]);

  // Latencies of the measured window, in ms; preallocated so the load loop does not allocate.
  let latencies = new Float64Array(1 << 20);
  let count = 0;
  let errors = 0;
  let measuring = false;
  let running = true;
  let n = 0;
  let answered = 0;
  const pairs = values.pairs
    ? (JSON.parse(await readFile(values.pairs, "utf8")) as { keyId: string; token?: string }[]).map((p) => {
        const metadata = new Metadata();
        if (p.token) metadata.set("authorization", `Bearer ${p.token}`);
        return { keyId: p.keyId, metadata };
      })
    : Array.from({ length: 4096 }, (_, i) => ({ keyId: `bench-${i}`, metadata: new Metadata() }));

  const one = (): Promise<void> =>
    new Promise((resolve) => {
      const started = performance.now();
      const pair = pairs[n++ % pairs.length] ?? pairs[0];
      client.GetDataKey({ data_key_id: pair?.keyId ?? "", length: 32 }, pair?.metadata ?? new Metadata(), (err) => {
        answered++;
        if (measuring) {
          if (err) {
            errors++;
            if (errors === 1) process.stderr.write(`load: first error: ${err.message}\n`);
          }
          else {
            if (count === latencies.length) {
              const bigger = new Float64Array(latencies.length * 2);
              bigger.set(latencies);
              latencies = bigger;
            }
            latencies[count++] = performance.now() - started;
          }
        }
        resolve();
      });
    });
  const caller = async (): Promise<void> => {
    while (running) await one();
  };

  const callers = Array.from({ length: concurrency }, caller);
  await new Promise((r) => setTimeout(r, warmupMs));
  measuring = true;
  const windowStart = performance.now();
  await new Promise((r) => setTimeout(r, durationMs));
  measuring = false;
  const seconds = (performance.now() - windowStart) / 1000;
  running = false;
  await Promise.all(callers);
  client.close();

  const sorted = latencies.subarray(0, count).sort();
  const pick = (q: number): number => sorted[Math.min(count - 1, Math.floor(q * count))] ?? Number.NaN;
  const result: LoadResult = {
    calls: count,
    seconds,
    perSecond: count / seconds,
    p50Ms: pick(0.5),
    p99Ms: pick(0.99),
    errors,
    answered,
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`load: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
