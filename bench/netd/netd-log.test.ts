import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { commandMsBetween, commandsBetween, firstAfter, isReconcileEnd, parseNetdLog, peerSetAt, programOf } from "./netd-log.js";

// The start of a real netd log at LOG_LEVEL=debug (the host tier's n1, wireguard-go), then the
// first reconcile after a peer published its key.
const log = readFileSync(join(import.meta.dirname, "testdata", "netd-debug.log"), "utf8");

describe("netd log", () => {
  const entries = parseNetdLog(`${log}not json\n{"broken":\n`);

  it("reads every JSON line with its time, skipping anything else", () => {
    expect(entries).toHaveLength(45);
    expect(entries[0]).toMatchObject({ time: Date.parse("2026-11-25T09:45:39.593Z"), msg: "created private key" });
    expect(entries[1]).toEqual({ time: Date.parse("2026-11-25T09:45:39.624Z"), msg: "command", cmd: "ip -j addr show", ms: 30 });
  });

  it("finds the reconciles' ends and their peer counts", () => {
    const ends = entries.filter(isReconcileEnd);
    expect(ends.map((e) => [e.msg, e.peers, e.peersChanged])).toEqual([
      ["applied changes", 0, 0],
      ["in sync", 0, 0],
      ["applied changes", 1, 1],
    ]);
  });

  it("counts the commands of one change by program and sums their time", () => {
    const before = firstAfter(entries, 0, (e) => e.msg === "in sync");
    const applied = firstAfter(entries, before?.time ?? 0, (e) => e.msg === "applied changes");
    expect(before && applied).toBeTruthy();
    const from = before?.time ?? 0;
    const to = applied?.time ?? 0;
    expect(commandsBetween(entries, from, to)).toEqual({ ip: 7, nft: 1, wg: 3 });
    expect(commandMsBetween(entries, from, to)).toBe(17 + 23 + 26 + 19 + 25 + 39 + 23 + 38 + 19 + 14 + 9);
    expect(programOf("/usr/bin/wireguard-go cndwg-n1")).toBe("wireguard-go");
  });

  it("knows when a peer entered the interface", () => {
    const set = peerSetAt(entries, 0, "ZvAbB9clj+vhfvJ7FPXN+Xq78JUkIyUgCKT/1U+/+jo=");
    expect(set?.time).toBe(Date.parse("2026-11-25T09:45:42.659Z"));
    expect(peerSetAt(entries, 0, "AAAA")).toBeUndefined();
  });
});
