import type { Command } from "../../lib/exec.js";

export function mountFilesystem(spec: { device: string; target: string; fsType: string; options: readonly string[] }): Command {
  const args = ["-t", spec.fsType];
  if (spec.options.length > 0) args.push("-o", spec.options.join(","));
  return { file: "mount", args: [...args, spec.device, spec.target] };
}

/** util-linux applies `-o ro` to a bind mount with the remount it needs (since 2.27). */
export function bindMount(spec: { source: string; target: string; readOnly: boolean }): Command {
  const args = ["--bind"];
  if (spec.readOnly) args.push("-o", "ro");
  return { file: "mount", args: [...args, spec.source, spec.target] };
}

export function unmount(target: string): Command {
  return { file: "umount", args: [target] };
}

/** One line of /proc/self/mountinfo (proc(5)). */
export interface MountEntry {
  readonly id: number;
  readonly parentId: number;
  /** "major:minor" of the mounted filesystem's device. */
  readonly device: string;
  /** The path inside that filesystem that is mounted here ("/" unless a bind of a subtree). */
  readonly root: string;
  readonly mountPoint: string;
  /** Per-mount options, e.g. ["rw", "relatime"]. */
  readonly options: readonly string[];
  readonly fsType: string;
  readonly source: string;
  readonly superOptions: readonly string[];
}

export function parseMountInfo(text: string): MountEntry[] {
  const entries: MountEntry[] = [];
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    const fields = line.split(" ");
    const separator = fields.indexOf("-", 6);
    if (separator < 0 || fields.length < separator + 4) throw new Error(`malformed mountinfo line: ${line}`);
    entries.push({
      id: Number(fields[0]),
      parentId: Number(fields[1]),
      device: fields[2] ?? "",
      root: unescape(fields[3] ?? ""),
      mountPoint: unescape(fields[4] ?? ""),
      options: (fields[5] ?? "").split(","),
      fsType: fields[separator + 1] ?? "",
      source: unescape(fields[separator + 2] ?? ""),
      superOptions: (fields[separator + 3] ?? "").split(","),
    });
  }
  return entries;
}

/** The kernel escapes space, tab, newline and backslash as octal (\040 ...). */
function unescape(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

/** The mounts stacked on `path`, bottom first: the last one is what a reader sees. */
export function mountsAt(entries: readonly MountEntry[], path: string): MountEntry[] {
  return entries.filter((entry) => entry.mountPoint === path);
}
