import { describe, expect, it } from "vitest";
import { parseStat, parseStatus } from "./proc-stats.js";

// Lines of /proc/<pid>/status and a whole /proc/<pid>/stat of a Node process (Linux 6.1); the
// name in stat may hold spaces and parentheses, hence the parsing from the last ")".
const status = `Name:\tnode
Umask:\t0022
State:\tS (sleeping)
VmPeak:\t 1254044 kB
VmSize:\t 1189532 kB
VmHWM:\t  112640 kB
VmRSS:\t   98304 kB
RssAnon:\t   61440 kB
`;
const stat =
  "4242 (node (x) y) S 4200 4242 4200 0 -1 4194560 30714 912 0 0 1234 321 56 44 20 0 11 0 1075314 1189532160 24576 18446744073709551615 1 1 0 0 0 0 0 16781312 17922 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0";

describe("proc stats", () => {
  it("reads current and peak RSS in MB", () => {
    expect(parseStatus(status)).toEqual({ rssMb: 96, peakRssMb: 110 });
    expect(() => parseStatus("Name:\tnode\n")).toThrow(/VmRSS/);
  });

  it("reads own and children's CPU seconds from stat", () => {
    expect(parseStat(stat)).toEqual({ cpuSeconds: 15.55, childCpuSeconds: 1 });
  });
});
