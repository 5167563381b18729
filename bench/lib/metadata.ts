import { readFile } from "node:fs/promises";
import { cpus, hostname, loadavg, release, totalmem } from "node:os";
import type { Command, Runner } from "../../lib/exec.js";

/**
 * Where and with what a benchmark ran: the machine, its kernel and the tools' versions. A
 * figure without these cannot be compared with another run.
 */
export interface Machine {
  readonly hostname: string;
  readonly cpuModel: string;
  readonly cpus: number;
  readonly memoryMb: number;
  readonly kernel: string;
  /** 1, 5 and 15 minute load averages when collected: the machine is shared, figures vary with it. */
  readonly loadAverage: readonly number[];
}

export async function describeMachine(): Promise<Machine> {
  return {
    hostname: hostname(),
    cpuModel: cpus()[0]?.model ?? (await cpuModelFromProc()),
    cpus: cpus().length,
    memoryMb: Math.round(totalmem() / 1048576),
    kernel: release(),
    loadAverage: loadavg().map((l) => Math.round(l * 100) / 100),
  };
}

async function cpuModelFromProc(): Promise<string> {
  const text = await readFile("/proc/cpuinfo", "utf8").catch(() => "");
  return /^model name\s*:\s*(.*)$/m.exec(text)?.[1]?.trim() ?? "unknown";
}

/** A tool whose version a result records: the command that prints it and how to read it. */
export interface VersionProbe {
  readonly name: string;
  readonly command: Command;
  readonly parse: (output: string) => string | undefined;
}

const firstLine = (output: string): string | undefined => output.split("\n").find((line) => line.trim() !== "")?.trim();

/** Version probes for the tools the benchmarks use, parsed from their real output (see metadata.test.ts). */
export const TOOLS = {
  cryptsetup: { name: "cryptsetup", command: { file: "cryptsetup", args: ["--version"] }, parse: (o) => /^cryptsetup (\S+)/m.exec(o)?.[1] },
  fio: { name: "fio", command: { file: "fio", args: ["--version"] }, parse: (o) => /^fio-(\S+)/m.exec(o)?.[1] },
  qemu: {
    name: "qemu",
    command: { file: "qemu-system-x86_64", args: ["--version"] },
    parse: (o) => /QEMU emulator version (\S+)/.exec(o)?.[1],
  },
  mke2fs: { name: "mke2fs", command: { file: "mkfs.ext4", args: ["-V"] }, parse: (o) => /^mke2fs (\S+)/m.exec(o)?.[1] },
  utilLinux: { name: "util-linux", command: { file: "losetup", args: ["--version"] }, parse: (o) => /util-linux (\S+)/.exec(o)?.[1] },
  wg: { name: "wireguard-tools", command: { file: "wg", args: ["--version"] }, parse: (o) => /wireguard-tools v(\S+)/.exec(o)?.[1] },
  iperf3: { name: "iperf3", command: { file: "iperf3", args: ["--version"] }, parse: (o) => /^iperf (\S+)/m.exec(o)?.[1] },
} satisfies Record<string, VersionProbe>;

/**
 * Node's version plus each probe's. A tool that is missing or prints something unexpected is
 * recorded as such rather than failing the benchmark: the version is context, not a result.
 */
export async function toolVersions(run: Runner, probes: readonly VersionProbe[]): Promise<Record<string, string>> {
  const versions: Record<string, string> = { node: process.version };
  for (const probe of probes) {
    try {
      const result = await run({ ...probe.command, timeoutMs: 30_000, okExitCodes: [0, 1] });
      const text = `${result.stdout}\n${result.stderr}`;
      versions[probe.name] = probe.parse(text) ?? `unrecognised: ${firstLine(text) ?? "(no output)"}`;
    } catch (err) {
      versions[probe.name] = `unavailable: ${err instanceof Error ? err.message.split("\n")[0] : String(err)}`;
    }
  }
  return versions;
}
