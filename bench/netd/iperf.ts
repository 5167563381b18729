/** iperf3 (TCP, one stream): the client's argv and its JSON report (`-J`), parsed. */

export interface IperfClientOptions {
  readonly host: string;
  readonly port: number;
  readonly seconds: number;
  /** Seconds at the start left out of the result (TCP's slow start, a first handshake). */
  readonly omitSeconds: number;
}

export function iperfClientArgv(o: IperfClientOptions): string[] {
  return ["iperf3", "--client", o.host, "--port", String(o.port), "--time", String(o.seconds), "--omit", String(o.omitSeconds), "--json"];
}

export function iperfServerArgv(port: number): string[] {
  // --forceflush: its "Server listening" line reaches a pipe at once, not when the buffer fills.
  return ["iperf3", "--server", "--port", String(port), "--forceflush"];
}

export interface IperfResult {
  /** What the receiver got, in Mbit/s (10^6 bits): the figure that counts. */
  readonly receivedMbps: number;
  readonly sentMbps: number;
  readonly retransmits: number;
  /** The MSS the sender's socket started with. */
  readonly mss: number | undefined;
  readonly seconds: number;
}

interface IperfJson {
  readonly error?: string;
  readonly start?: { readonly tcp_mss_default?: number };
  readonly end?: {
    readonly sum_sent?: { readonly bits_per_second?: number; readonly retransmits?: number; readonly seconds?: number };
    readonly sum_received?: { readonly bits_per_second?: number; readonly seconds?: number };
  };
}

export function parseIperf(stdout: string): IperfResult {
  const json = JSON.parse(stdout) as IperfJson;
  if (json.error) throw new Error(`iperf3: ${json.error}`);
  const received = json.end?.sum_received?.bits_per_second;
  const sent = json.end?.sum_sent?.bits_per_second;
  if (typeof received !== "number" || typeof sent !== "number") throw new Error("iperf3's report has no end.sum_received/sum_sent");
  return {
    receivedMbps: received / 1e6,
    sentMbps: sent / 1e6,
    retransmits: json.end?.sum_sent?.retransmits ?? 0,
    mss: json.start?.tcp_mss_default,
    seconds: json.end?.sum_received?.seconds ?? Number.NaN,
  };
}
