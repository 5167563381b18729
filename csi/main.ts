import { join } from "node:path";
import { createRunner, type Runner } from "../lib/exec.js";
import { toGrpcHandlers, type AsyncHandlers } from "../lib/grpc-handler.js";
import { startGrpcServer, stopOnSignals, type ServiceBinding } from "../lib/grpc-server.js";
import { createLogger, type Logger } from "../lib/log.js";
import { loadProto } from "../lib/proto.js";
import { cloakVersion, startupFields } from "../lib/version.js";
import type { ProtoGrpcType } from "../proto/gen/csi.js";
import type { ControllerHandlers } from "../proto/gen/csi/v1/Controller.js";
import type { IdentityHandlers } from "../proto/gen/csi/v1/Identity.js";
import type { NodeHandlers } from "../proto/gen/csi/v1/Node.js";
import { CSI_USAGE, parseCsiConfig, type CsiConfig } from "./config.js";
import { createControllerService } from "./controller/controller-service.js";
import { Reconciler } from "./controller/reconcile.js";
import { parseSnapshotRecord, parseVolumeRecord } from "./controller/records.js";
import { createLocalControllerSource } from "./disk/local/controller-source.js";
import { createLocalNodeSource } from "./disk/local/node-source.js";
import { RecordStore } from "./disk/local/record-store.js";
import { grpcSelfCheck, keySourceCheck } from "./health/checks.js";
import { startHealthServer, type HealthCheck } from "./health/health-server.js";
import { KeySourceMonitor } from "./health/key-source-monitor.js";
import { withKeySourceCondition } from "./health/volume-condition.js";
import { createIdentityService } from "./identity.js";
import { createFileKeySource } from "./keys/file-key-source.js";
import { createKeyServiceKeySource } from "./keys/keyservice-key-source.js";
import { NO_LINEAGE, type KeyLineage } from "./keys/lineage.js";
import { LuksDevices } from "./luks/luks-device.js";
import { CsiMetrics } from "./metrics.js";
import { createNodeService } from "./node/node-service.js";
import { KubeletRegistration } from "./registration/kubelet-registration.js";
import { VolumeLocks } from "./volume-locks.js";
import { NO_KEYS } from "./wrap/no-keys.js";
import { wrapServices } from "./wrap/services.js";

/** `cloak csi`: the CSI plugin. Runs until SIGTERM/SIGINT. */
export async function main(argv: string[]): Promise<number> {
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(CSI_USAGE);
    return 0;
  }
  const config = parseCsiConfig(argv, process.env);
  const log = createLogger({ component: "csi", level: config.logLevel });
  log.info(startupFields(), "starting cloak csi");
  const version = cloakVersion();
  const metrics = new CsiMetrics();
  const run = createRunner({ logger: log.child({ scope: "exec" }) });
  const keys =
    config.keySource.kind === "file"
      ? await createFileKeySource({ dir: config.keySource.dir })
      : config.keySource.kind === "none"
        ? NO_KEYS
        : await createKeyServiceKeySource({ ...config.keySource, logger: log.child({ scope: "keyservice-client" }) });
  const luks = new LuksDevices({ run, keys, bypassWorkqueues: config.bypassWorkqueues });
  const locks = new VolumeLocks();
  const csi = loadProto<ProtoGrpcType>("csi.proto").csi.v1;
  const serves = (service: string): boolean => (config.services as readonly string[]).includes(service);

  const services: ServiceBinding[] = [];
  let identity = createIdentityService({ name: config.driverName, version, controller: serves("controller"), topology: true, run });
  // Wrapper mode (csi/wrap/): the wrap controller service instead of the local one, the node
  // service over the wrap disk source, and service definitions that forward bytes.
  const wrap = config.wrap && wrapServices({ ...config.wrap, csi, run, log });
  if (wrap) identity = wrap.identity(identity);
  services.push({
    definition: csi.Identity.service,
    implementation: toGrpcHandlers<IdentityHandlers>("csi.v1.Identity", csi.Identity.service, identity, log, metrics),
  });
  const keySource = new KeySourceMonitor({
    keys,
    log: log.child({ scope: "key-source" }),
    onProbe: (ready) => metrics.setKeySourceReady(ready),
    intervalMs: config.keySourceProbeIntervalMs,
  });

  if (serves("controller")) {
    const definition = wrap?.controllerDefinition ?? csi.Controller.service;
    const controller = wrap
      ? wrap.controller({ lineage: await keyLineage(config, log), driver: config.driverName })
      : await localController(config, { run, log, luks, locks, metrics });
    services.push({
      definition,
      implementation: toGrpcHandlers<ControllerHandlers>("csi.v1.Controller", definition, controller, log, metrics),
    });
  }
  if (serves("node")) {
    const definition = wrap?.nodeDefinition ?? csi.Node.service;
    const node = createNodeService({
      nodeId: config.nodeId,
      maxVolumesPerNode: config.maxVolumesPerNode,
      allowedPathRoots: config.allowedPathRoots,
      run,
      luks,
      disks: wrap?.nodeSource() ?? createLocalNodeSource({ dir: config.volumesDir, run }),
      locks,
    });
    services.push({
      definition,
      implementation: toGrpcHandlers<NodeHandlers>("csi.v1.Node", definition, withKeySourceCondition(node, () => keySource.current), log, metrics),
    });
  }

  const server = await startGrpcServer({ endpoint: config.endpoint, logger: log, services });
  // In the background: a key source that does not answer must not hold the plugin's start back.
  void keySource.start();
  // After the CSI server: kubelet calls NodeGetInfo as soon as it finds the registration socket.
  const registration = config.registration
    ? await KubeletRegistration.start({
        dir: config.registration.dir,
        driverName: config.driverName,
        kubeletEndpoint: config.registration.kubeletEndpoint,
        log,
        observer: metrics,
        onState: (state, reported) => metrics.setKubeletRegistration(state.state === "registered", reported),
      })
    : undefined;
  const readiness: HealthCheck[] = [grpcSelfCheck(server.endpoint, "Probe"), keySourceCheck(keySource, keys.kind)];
  if (registration) readiness.push(registration.check);
  const health = config.healthListen
    ? await startHealthServer({ endpoint: config.healthListen, liveness: [grpcSelfCheck(server.endpoint, "GetPluginInfo")], readiness, registry: metrics.registry, log })
    : undefined;
  log.info(
    {
      driver: config.driverName,
      version,
      nodeId: config.nodeId,
      services: config.services,
      keySource: keys.kind,
      keyLineage: config.keyLineage,
      diskSource: wrap?.describe ?? "local",
      ...(registration ? { registrationSocket: registration.socketPath, kubeletEndpoint: config.registration?.kubeletEndpoint } : {}),
      ...(health ? { healthPort: health.port } : {}),
    },
    "cloak CSI plugin started",
  );
  // The registration socket goes first, so that kubelet stops using the driver before it stops.
  stopOnSignals(
    [
      {
        stop: async () => {
          await registration?.stop();
          await Promise.all([server.stop(), health?.stop(), keySource.stop()]);
          await Promise.all([keys.close(), wrap?.stop()]);
        },
      },
    ],
    log,
  );
  return new Promise<number>(() => undefined);
}

/** The controller over the local disk source: its records, and the reconciler that tidies them. */
async function localController(
  config: CsiConfig,
  deps: { run: Runner; log: Logger; luks: LuksDevices; locks: VolumeLocks; metrics: CsiMetrics },
): Promise<AsyncHandlers<ControllerHandlers>> {
  const { run, log, luks, locks, metrics } = deps;
  const lineage = await keyLineage(config, log);
  const disks = createLocalControllerSource({ dir: config.volumesDir, run, log });
  const onQuarantine = (path: string, reason: string): void => {
    log.error({ path, reason }, "quarantined a record that cannot be read");
    metrics.recordQuarantined(path, reason);
  };
  const volumes = await RecordStore.open(join(config.volumesDir, "records", "volumes"), parseVolumeRecord, { onQuarantine });
  const snapshots = await RecordStore.open(join(config.volumesDir, "records", "snapshots"), parseSnapshotRecord, { onQuarantine });
  const reconciler = new Reconciler({ disks, volumes, snapshots, locks, log: log.child({ scope: "reconcile" }), abandonAfterMs: config.abandonCreatingAfterMs, lineage, driverName: config.driverName });
  await reconciler.startup();
  reconciler.start();
  return createControllerService({
    nodeId: config.nodeId,
    disks,
    volumes,
    snapshots,
    luks,
    locks,
    log,
    lineage,
    driverName: config.driverName,
    overcommitRatio: config.overcommitRatio,
    activity: reconciler,
  });
}

/** The configured key lineage; the Kubernetes API's client is loaded only when it is used. */
async function keyLineage(config: CsiConfig, log: Logger): Promise<KeyLineage> {
  if (config.keyLineage !== "kubernetes") return NO_LINEAGE;
  const [{ kubernetesLineage }, { KubeClient }] = await Promise.all([import("./keys/lineage.js"), import("../lib/kube/client.js")]);
  return kubernetesLineage({ api: await KubeClient.connect(config.kubeconfig, "cloak-csi"), logger: log.child({ scope: "key-lineage" }) });
}
