import { readFile, rm, writeFile, mkdir } from "node:fs/promises";
import { setFlagsFromString } from "node:v8";
import { join } from "node:path";
import { createRunner } from "../lib/exec.js";
import { createLogger, type Logger } from "../lib/log.js";
import { startupFields } from "../lib/version.js";
import { KubeClient } from "../lib/kube/client.js";
import { nodePath } from "../lib/kube/types.js";
import { Agent, type AgentStatus } from "./agent.js";
import { parseCommand, USAGE, V8_FLAGS, type NetdConfig } from "./config.js";
import { LinuxDataplane } from "./dataplane.js";
import { generateKeyPair, writeKeyFile } from "./keys.js";
import { NetdMetrics } from "./metrics.js";
import { KubeNodeSource } from "./node-source.js";
import { PORT_ANNOTATION, PUBLIC_KEY_ANNOTATION } from "./nodes.js";
import { startStatusServer } from "./status-server.js";
import { strictStateFile } from "./strict-state.js";
import { formatStatus } from "./status-format.js";

/** `cloak netd <command>`: run | status | rotate-key | cleanup. */
export async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseCommand(argv, process.env);
  } catch (err) {
    process.stderr.write(`netd: ${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  const { command, config, purge } = parsed;
  const logger = createLogger({ component: "netd" });
  try {
    switch (command) {
      case "run":
        return await run(config, logger);
      case "status":
        return await status(config);
      case "rotate-key":
        return await rotateKey(config, logger);
      case "cleanup":
        return await cleanup(config, logger, purge);
      case "help":
        process.stdout.write(USAGE);
        return 0;
      default:
        process.stderr.write(`netd: unknown command ${JSON.stringify(command)}\n\n${USAGE}`);
        return 2;
    }
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    logger.error({ command, err: message }, "netd failed");
    return 1;
  }
}

function kubeClient(config: NetdConfig): Promise<KubeClient> {
  return KubeClient.connect(config.kubeconfig, "cloak-netd");
}

function pidFile(config: NetdConfig): string {
  return join(config.stateDir, "netd.pid");
}

/** Where the running agent serves /status, for `cloak netd status` (which lacks the agent's flags). */
function addressFile(config: NetdConfig): string {
  return join(config.stateDir, "status-address");
}

function dataplaneFor(config: NetdConfig, runner: ReturnType<typeof createRunner>, logger: Logger): LinuxDataplane {
  return new LinuxDataplane({
    runner,
    logger,
    iface: config.iface,
    listenPort: config.listenPort,
    fwmark: config.fwmark,
    fwmask: config.fwmask,
    table: config.table,
    rulePriority: config.rulePriority,
    implementation: config.implementation,
    wireguardGo: config.wireguardGo,
    nftTable: config.nftTable,
  });
}

async function run(config: NetdConfig, logger: Logger): Promise<number> {
  logger.info(startupFields(), "starting cloak netd");
  if (!config.nodeName) throw new Error("no node name: set NODE_NAME (the downward API's spec.nodeName) or --node-name");
  // netd allocates in bursts (a list, a full program) around a small live set; V8's default
  // lets the heap grow to several times that before it collects. See V8_FLAGS.
  setFlagsFromString(V8_FLAGS);
  const metrics = new NetdMetrics();
  const runner = metrics.countingRunner(createRunner({ logger }));
  const log = logger.child({ node: config.nodeName, iface: config.iface });
  const nodes = new KubeNodeSource(await kubeClient(config), log, () => metrics.apiErrors.inc());
  const agent = new Agent({ config, nodes, dataplane: dataplaneFor(config, runner, log), logger, metrics });
  await mkdir(config.stateDir, { recursive: true, mode: 0o700 });
  await agent.start();
  const server = config.metricsAddress ? await startStatusServer({ address: config.metricsAddress, agent, metrics, logger }) : undefined;
  await writeFile(pidFile(config), `${process.pid}\n`);
  if (server) await writeFile(addressFile(config), `${server.address}\n`);
  else await rm(addressFile(config), { force: true });

  // SIGUSR1 is `cloak netd rotate-key` talking to this process.
  const onRotate = () => {
    agent.rotateKey().catch((err: unknown) => logger.error({ err: (err as Error).message }, "key rotation failed"));
  };
  process.on("SIGUSR1", onRotate);
  await new Promise<void>((resolve) => {
    process.once("SIGTERM", resolve);
    process.once("SIGINT", resolve);
  });
  process.off("SIGUSR1", onRotate);
  logger.info("stopping");
  await server?.close();
  await agent.stop();
  await rm(pidFile(config), { force: true });
  await rm(addressFile(config), { force: true });
  return 0;
}

async function status(config: NetdConfig): Promise<number> {
  // The running agent says where it listens; --metrics-address (or the default) otherwise.
  const running = config.metricsAddressGiven ? undefined : await readFile(addressFile(config), "utf8").then((t) => t.trim(), () => undefined);
  const [host, port] = splitAddress(running || config.metricsAddress);
  const url = `http://${host === "0.0.0.0" || host === "" ? "127.0.0.1" : host === "::" ? "[::1]" : host.includes(":") ? `[${host}]` : host}:${port}/status`;
  const response = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  if (!response.ok) throw new Error(`${url} answered ${response.status}`);
  const body = (await response.json()) as AgentStatus;
  process.stdout.write(formatStatus(body, Math.floor(Date.now() / 1000)));
  return body.lastError === undefined ? 0 : 1;
}

export function splitAddress(address: string): [string, string] {
  const colon = address.lastIndexOf(":");
  if (colon < 0) throw new Error(`--metrics-address ${JSON.stringify(address)} has no port`);
  return [address.slice(0, colon).replace(/^\[|\]$/g, ""), address.slice(colon + 1)];
}

async function rotateKey(config: NetdConfig, logger: Logger): Promise<number> {
  let pid: number | undefined;
  try {
    pid = Number((await readFile(pidFile(config), "utf8")).trim());
    process.kill(pid, 0);
  } catch {
    pid = undefined;
  }
  if (pid !== undefined) {
    process.kill(pid, "SIGUSR1");
    logger.info({ pid }, "asked the running netd to rotate its key");
    return 0;
  }
  // No agent: replace the file; the next start applies and publishes the new key.
  const keys = generateKeyPair();
  await writeKeyFile(config.keyFile, keys.privateKey);
  logger.info({ keyFile: config.keyFile, publicKey: keys.publicKey }, "no running netd: wrote a new key for the next start");
  return 0;
}

async function cleanup(config: NetdConfig, logger: Logger, purge: boolean): Promise<number> {
  const removed = await dataplaneFor(config, createRunner({ logger }), logger).cleanup();
  for (const what of removed) logger.info({ removed: what }, "removed");
  if (purge) {
    await rm(config.keyFile, { force: true });
    await rm(strictStateFile(config.stateDir), { force: true });
    logger.info({ keyFile: config.keyFile }, "removed the private key");
    if (config.nodeName) {
      const client = await kubeClient(config);
      try {
        await client.mergePatch(nodePath(config.nodeName), { metadata: { annotations: { [PUBLIC_KEY_ANNOTATION]: null, [PORT_ANNOTATION]: null } } });
      } finally {
        client.close();
      }
      logger.info({ node: config.nodeName }, "removed the Node annotations");
    }
  }
  if (removed.length === 0) logger.info("nothing of netd's was left on this node");
  return 0;
}
