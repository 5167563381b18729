import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { join } from "node:path";
import { packageRoot } from "../../lib/paths.js";

/**
 * Running a benchmark's measuring half in the VM tier (test/vm/run.sh) and getting its figures
 * back. The guest cannot write into the host's work tree (it sees it read-only under a
 * throwaway overlay), so it prints its result as one marked line on stdout; the host half picks
 * that line out, passes everything else through as progress, and writes the JSON file.
 */
const MARKER = "@@cloak-bench-result@@ ";

/** Inside the guest: hand the result to the host half. */
export function emitGuestResult(payload: unknown): void {
  process.stdout.write(`\n${MARKER}${JSON.stringify(payload)}\n`);
}

/** The marked payloads in a stream of output lines, and the other lines. */
export function splitGuestOutput(lines: readonly string[]): { payloads: unknown[]; other: string[] } {
  const payloads: unknown[] = [];
  const other: string[] = [];
  for (const line of lines) {
    if (line.startsWith(MARKER)) payloads.push(JSON.parse(line.slice(MARKER.length)) as unknown);
    else other.push(line);
  }
  return { payloads, other };
}

export interface VmRunOptions {
  /** Guest memory in MB: files the benchmark keeps in the guest's /tmp count against it. */
  readonly memMb: number;
  readonly timeoutSeconds: number;
  /** The command to run inside, e.g. [node, dist/bench/storage/guest.js]. */
  readonly command: readonly string[];
  readonly env?: Readonly<Record<string, string>>;
}

/**
 * Runs `command` through test/vm/run.sh (native where the kernel allows, else qemu), streaming
 * its output to this process's stderr, and returns the one result it emitted. Fails when the
 * command fails or emits no result, so that a broken run never writes a result file.
 */
export async function runInVm<T>(options: VmRunOptions): Promise<T> {
  const script = join(packageRoot(), "test", "vm", "run.sh");
  const args = ["--mem", String(options.memMb), "--timeout", String(options.timeoutSeconds), "--", ...options.command];
  const child = spawn(script, args, { stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, ...options.env } });
  const payloads: unknown[] = [];
  const lines = createInterface({ input: child.stdout });
  lines.on("line", (line) => {
    const { payloads: found, other } = splitGuestOutput([line]);
    payloads.push(...found);
    for (const text of other) process.stderr.write(`${text}\n`);
  });
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.once("close", (c, s) => resolve([c, s])));
  if (code !== 0) throw new Error(`test/vm/run.sh ${args.join(" ")} ${signal ? `was killed by ${signal}` : `exited ${code}`}`);
  if (payloads.length !== 1) throw new Error(`the guest emitted ${payloads.length} results, expected exactly one`);
  return payloads[0] as T;
}

/**
 * For the guest half: refuse to run anywhere but under test/vm/run.sh, which sets
 * CLOAK_VM_MODE once it has a kernel with dm-crypt (native) or booted one (vm).
 */
export function guestTier(): "native" | "vm" {
  const mode = process.env["CLOAK_VM_MODE"];
  if (mode !== "vm" && mode !== "native") {
    throw new Error("this benchmark measures dm-crypt and must run under test/vm/run.sh (use its make target)");
  }
  return mode;
}
