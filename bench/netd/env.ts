import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startApiServer, type ApiServer } from "../../test/apiserver/apiserver.js";
import { NetdCluster } from "../../test/netns/netd-cluster.js";
import { createTestbed, type Testbed, type TestNode } from "../../test/netns/testbed.js";
import { stopSenders } from "../../test/netns/traffic.js";

/**
 * The benchmark's own netns testbed and API server (test/netns, test/apiserver), under names
 * no test uses: namespaces "cloak-ndb-*", WireGuard interfaces "cndb*". wireguard-go's control
 * sockets live in the machine-wide /var/run/wireguard, so the interface names (not just the
 * namespaces) must differ from the host tier's "cndwg-*" for the two to run side by side.
 */
export const PREFIX = "cloak-ndb-";
export const IFACE_PREFIX = "cndbwg-";

/** NetdCluster with the benchmark's interface names. */
export class BenchCluster extends NetdCluster {
  override iface(node: TestNode): string {
    return `${IFACE_PREFIX}${node.name}`;
  }
}

export interface BenchEnv {
  readonly tb: Testbed;
  readonly api: ApiServer;
  readonly cluster: BenchCluster;
  readonly dir: string;
  close(): Promise<void>;
}

export interface EnvOptions {
  readonly nodes: number;
  readonly implementation: "kernel" | "userspace";
  /** Flags every netd gets. */
  readonly flags: readonly string[];
  /** Extra wireguard-go interface names this run creates (their sockets are cleaned up too). */
  readonly extraInterfaces?: readonly string[];
}

export async function startEnv(o: EnvOptions): Promise<BenchEnv> {
  const dir = await mkdtemp(join(tmpdir(), PREFIX));
  const names = (tb: Testbed) => [...tb.nodes.map((n) => `${IFACE_PREFIX}${n.name}`), ...(o.extraInterfaces ?? [])];
  let tb: Testbed | undefined;
  let api: ApiServer | undefined;
  try {
    tb = await createTestbed({ nodes: o.nodes, api: true, prefix: PREFIX });
    await removeSockets(names(tb));
    api = await startApiServer({ dir: join(dir, "api"), netns: tb.apiNs ?? "", address: tb.apiAddress4 });
    const cluster = new BenchCluster({ testbed: tb, api, dir: join(dir, "netd"), implementation: o.implementation, flags: o.flags });
    await cluster.init();
    const env: BenchEnv = {
      tb,
      api,
      cluster,
      dir,
      close: async () => {
        await cluster.stopAll();
        await stopSenders();
        await api?.stop();
        await tb?.destroy();
        await removeSockets(names(env.tb));
        if (!process.env["CLOAK_KEEP_TEST_DIR"]) await rm(dir, { recursive: true, force: true });
      },
    };
    return env;
  } catch (err) {
    await api?.stop();
    await tb?.destroy();
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

/** wireguard-go's control sockets of these interfaces (left behind when a run is killed). */
export async function removeSockets(ifaces: readonly string[]): Promise<void> {
  for (const name of ifaces) await rm(`/var/run/wireguard/${name}.sock`, { force: true });
}
