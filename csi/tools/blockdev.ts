import type { Command } from "../../lib/exec.js";

export function sizeInBytes(device: string): Command {
  return { file: "blockdev", args: ["--getsize64", device] };
}

export function parseSize(stdout: string): number {
  const size = Number(stdout.trim());
  if (!Number.isSafeInteger(size) || size < 0) throw new Error(`blockdev printed ${JSON.stringify(stdout)}, not a size`);
  return size;
}
