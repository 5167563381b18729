import { Counter, Gauge, Histogram, Registry } from "prom-client";
import { registerBuildInfo } from "../lib/build-info.js";
import type { Command, Runner } from "../lib/exec.js";
import type { LiveDevice } from "./tools/wg.js";

/** A peer with a handshake younger than this counts as connected (WireGuard rekeys every 2 min). */
export const HANDSHAKE_FRESH_SECONDS = 180;

export class NetdMetrics {
  readonly registry = new Registry();
  readonly buildInfo = registerBuildInfo(this.registry, "netd");
  readonly peersConfigured = new Gauge({ name: "netd_peers_configured", help: "Peers on the WireGuard interface", registers: [this.registry] });
  readonly peersConnected = new Gauge({
    name: "netd_peers_connected",
    help: `Peers with a handshake in the last ${HANDSHAKE_FRESH_SECONDS} seconds`,
    registers: [this.registry],
  });
  readonly bytesSent = new Gauge({ name: "netd_peer_sent_bytes", help: "Bytes sent to a peer", labelNames: ["node"], registers: [this.registry] });
  readonly bytesReceived = new Gauge({ name: "netd_peer_received_bytes", help: "Bytes received from a peer", labelNames: ["node"], registers: [this.registry] });
  readonly handshakeAge = new Gauge({
    name: "netd_peer_last_handshake_age_seconds",
    help: "Seconds since the last handshake with a peer (absent before the first one)",
    labelNames: ["node"],
    registers: [this.registry],
  });
  readonly reconciles = new Counter({ name: "netd_reconciles_total", help: "Reconciles run", registers: [this.registry] });
  readonly reconcileErrors = new Counter({ name: "netd_reconcile_errors_total", help: "Reconciles that failed", registers: [this.registry] });
  readonly reconcileDuration = new Histogram({
    name: "netd_reconcile_duration_seconds",
    help: "Time to read live state and apply the difference",
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  readonly apiErrors = new Counter({ name: "netd_api_errors_total", help: "Failed list/watch/patch calls to the API server", registers: [this.registry] });
  readonly skippedNodes = new Gauge({ name: "netd_nodes_skipped", help: "Nodes that get no peer (no key, duplicate key, no address)", registers: [this.registry] });
  /** `wg`/`ip`/`nft` processes started: what the convergence benchmark counts per change. */
  readonly commands = new Counter({ name: "netd_commands_total", help: "External commands run, by program", labelNames: ["program"], registers: [this.registry] });

  /** Wraps a runner so that every command it runs is counted by program name. */
  countingRunner(runner: Runner): Runner {
    return (command: Command, options) => {
      this.commands.inc({ program: command.file.split("/").pop() ?? command.file });
      return runner(command, options);
    };
  }

  /** Per-peer gauges from one `wg show dump`; `nodeOf` names peers by their Node. */
  observeDevice(device: LiveDevice, nodeOf: (publicKey: string) => string | undefined, nowSeconds: number): void {
    this.peersConfigured.set(device.peers.length);
    let connected = 0;
    this.bytesSent.reset();
    this.bytesReceived.reset();
    this.handshakeAge.reset();
    for (const peer of device.peers) {
      const node = nodeOf(peer.publicKey) ?? peer.publicKey;
      this.bytesSent.set({ node }, peer.txBytes);
      this.bytesReceived.set({ node }, peer.rxBytes);
      if (peer.latestHandshake > 0) {
        const age = Math.max(0, nowSeconds - peer.latestHandshake);
        this.handshakeAge.set({ node }, age);
        if (age < HANDSHAKE_FRESH_SECONDS) connected++;
      }
    }
    this.peersConnected.set(connected);
  }
}
