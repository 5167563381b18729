import type { AsyncHandlers } from "../../lib/grpc-handler.js";
import type { NodeHandlers } from "../../proto/gen/csi/v1/Node.js";
import type { KeySourceState } from "./key-source-monitor.js";

/**
 * The Node service with the key source's state in every volume condition NodeGetVolumeStats
 * reports: while the key source does not answer, a staged volume still reads and writes (its
 * key is in the kernel), but it cannot be staged again — after a node reboot, a pod moved, a
 * plugin restart — so it is reported abnormal, with that said in the message, and kubelet's
 * volume health metrics and events show the outage per volume. The conditions the Node service
 * finds itself (csi/node/stats.ts) come first.
 */
export function withKeySourceCondition(node: AsyncHandlers<NodeHandlers>, keySource: () => KeySourceState): AsyncHandlers<NodeHandlers> {
  const stats = node.NodeGetVolumeStats;
  if (!stats) return node;
  return {
    ...node,
    async NodeGetVolumeStats(req, context) {
      const response = await stats(req, context);
      const state = keySource();
      if (state.ready !== false) return response;
      const outage =
        `the key source does not answer (${state.error ?? "not ready"}) since ${new Date(state.since).toISOString()}: ` +
        "the volume stays readable and writable while staged, but cannot be staged again until it answers";
      const previous = response.volume_condition;
      const message = previous?.abnormal && previous.message ? `${previous.message}; ${outage}` : outage;
      return { ...response, volume_condition: { abnormal: true, message } };
    },
  };
}
