import { KubeApiError, type KubeClient } from "../lib/kube/client.js";
import { Reflector } from "../lib/kube/reflector.js";
import { nodePath, type Node } from "../lib/kube/types.js";
import type { Logger } from "../lib/log.js";
import type { NodeSource } from "./backend.js";
import { nodeInfo, type NodeInfo } from "./nodes.js";

/**
 * netd's Nodes from the API server: a Reflector over /api/v1/nodes that keeps only the
 * planner's view of each Node (nodes.ts), and merge patches for this node's annotations.
 */
export class KubeNodeSource implements NodeSource {
  private readonly reflector: Reflector<NodeInfo>;
  private onChange: ((nodes: ReadonlyMap<string, NodeInfo>, reason: string) => void) | undefined;

  constructor(
    private readonly client: KubeClient,
    logger: Logger,
    onError: (err: unknown) => void = () => undefined,
    options: { pageSize?: number } = {},
  ) {
    this.reflector = new Reflector<NodeInfo>({
      client,
      path: "/api/v1/nodes",
      logger,
      // Each Node is projected once per version: one event re-reads one Node, not all.
      project: (object) => nodeInfo(object as Node),
      onChange: (nodes, reason) => this.onChange?.(nodes, reason),
      onError,
      ...(options.pageSize ? { pageSize: options.pageSize } : {}),
    });
  }

  get synced(): boolean {
    return this.reflector.synced;
  }

  start(onChange: (nodes: ReadonlyMap<string, NodeInfo>, reason: string) => void): void {
    this.onChange = onChange;
    this.reflector.start();
  }

  async stop(): Promise<void> {
    await this.reflector.stop();
    this.client.close();
  }

  async get(name: string): Promise<NodeInfo | undefined> {
    try {
      return nodeInfo(await this.client.json<Node>("GET", nodePath(name), { timeoutMs: 5_000 }));
    } catch (err) {
      if (err instanceof KubeApiError && err.code === 404) return undefined;
      throw err;
    }
  }

  async annotate(name: string, annotations: Readonly<Record<string, string | null>>): Promise<void> {
    await this.client.mergePatch(nodePath(name), { metadata: { annotations } });
  }
}
