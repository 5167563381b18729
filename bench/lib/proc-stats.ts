import { readFile, readlink } from "node:fs/promises";
import { basename } from "node:path";

/**
 * A process's memory and CPU from /proc, read while it runs: peak RSS (VmHWM, the kernel's
 * high-water mark, so no sample can miss the peak) and CPU seconds, its own and those of the
 * children it waited for (netd's wg/ip/nft commands, say).
 */
export interface ProcStats {
  readonly rssMb: number;
  readonly peakRssMb: number;
  /** user + system time of the process itself. */
  readonly cpuSeconds: number;
  /** user + system time of its finished, waited-for children. */
  readonly childCpuSeconds: number;
}

/** Clock ticks per second for /proc/<pid>/stat: 100 on every Linux architecture we run. */
const CLK_TCK = 100;

export function parseStatus(text: string): { rssMb: number; peakRssMb: number } {
  const kb = (field: string): number => {
    const match = new RegExp(`^${field}:\\s+(\\d+) kB$`, "m").exec(text);
    if (!match?.[1]) throw new Error(`/proc/<pid>/status has no ${field}`);
    return Number(match[1]);
  };
  return { rssMb: kb("VmRSS") / 1024, peakRssMb: kb("VmHWM") / 1024 };
}

/** Fields 14-17 of /proc/<pid>/stat (utime, stime, cutime, cstime), after the parenthesised name. */
export function parseStat(text: string): { cpuSeconds: number; childCpuSeconds: number } {
  const rest = text.slice(text.lastIndexOf(")") + 2).trim().split(/\s+/);
  // rest[0] is field 3 (state), so field n is rest[n - 3].
  const field = (n: number): number => {
    const value = Number(rest[n - 3]);
    if (!Number.isFinite(value)) throw new Error(`/proc/<pid>/stat field ${n} is not a number`);
    return value;
  };
  return { cpuSeconds: (field(14) + field(15)) / CLK_TCK, childCpuSeconds: (field(16) + field(17)) / CLK_TCK };
}

export async function procStats(pid: number): Promise<ProcStats> {
  const [status, stat] = await Promise.all([readFile(`/proc/${pid}/status`, "utf8"), readFile(`/proc/${pid}/stat`, "utf8")]);
  return { ...parseStatus(status), ...parseStat(stat) };
}

/**
 * The file name of a process's executable ("node", "wireguard-go"). `ip netns exec` execs its
 * command in place, so a daemon's pid is the program's own, which this lets a caller check.
 * (Not /proc/<pid>/comm: Node names its main thread "MainThread".)
 */
export async function exeName(pid: number): Promise<string> {
  return basename(await readlink(`/proc/${pid}/exe`));
}
