import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";

/**
 * Whether this kernel can open dm-crypt mappings: the same test test/vm/run.sh makes to pick
 * native mode. Host-tier tests that reach `cryptsetup open` expect success where it is there
 * and the kernel's refusal where it is not, so that they pass on both.
 */
export function kernelHasDmCrypt(): boolean {
  const misc = existsSync("/proc/misc") ? readFileSync("/proc/misc", "utf8") : "";
  if (!/\bdevice-mapper\b/.test(misc) || !existsSync("/dev/mapper/control")) return false;
  return existsSync("/sys/module/dm_crypt") || spawnSync("modprobe", ["-q", "dm_crypt"]).status === 0;
}
