import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { iperfClientArgv, parseIperf } from "./iperf.js";

// iperf3 3.12's -J report of a 2 s TCP test over loopback in a fresh namespace (1 s omitted).
const report = readFileSync(join(import.meta.dirname, "testdata", "iperf3-tcp.json"), "utf8");

describe("iperf3", () => {
  it("reads the receiver's rate, retransmits and MSS", () => {
    const r = parseIperf(report);
    expect(r.receivedMbps).toBeCloseTo(25139.4, 1);
    expect(r.sentMbps).toBeCloseTo(25125.17, 1);
    expect(r.retransmits).toBe(0);
    expect(r.mss).toBe(32768);
    expect(r.seconds).toBeCloseTo(2, 3);
  });

  it("turns iperf3's error report into an error", () => {
    expect(() => parseIperf('{"start":{},"intervals":[],"end":{},"error":"unable to connect to server: Connection refused"}')).toThrow(/Connection refused/);
    expect(() => parseIperf('{"start":{},"end":{}}')).toThrow(/sum_received/);
  });

  it("builds the client's argv", () => {
    expect(iperfClientArgv({ host: "198.51.100.66", port: 5201, seconds: 5, omitSeconds: 1 })).toEqual([
      "iperf3", "--client", "198.51.100.66", "--port", "5201", "--time", "5", "--omit", "1", "--json",
    ]);
  });
});
