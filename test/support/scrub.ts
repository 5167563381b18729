import { readFile, readdir } from "node:fs/promises";
import { createRunner, type Runner } from "../../lib/exec.js";
import { createLogger } from "../../lib/log.js";
import { parseMountInfo } from "../../csi/tools/mount.js";

const run: Runner = createRunner({ logger: createLogger({ component: "test-scrub", level: "silent" }) });

/**
 * Undoes everything a test may have left under `root`, whether it passed or not: unmounts
 * every mount point below it (deepest first), closes device-mapper devices that sit on loop
 * devices backed by files below it, and detaches those loop devices. Only things under `root`
 * are touched, so tests of other engineers running on the same machine are safe.
 */
export async function scrubTree(root: string): Promise<void> {
  const prefix = root.endsWith("/") ? root : `${root}/`;
  const mounts = parseMountInfo(await readFile("/proc/self/mountinfo", "utf8"))
    .filter((m) => m.mountPoint.startsWith(prefix))
    .reverse();
  // A copy interrupted while its source was frozen leaves it frozen: thawed first, or the
  // unmount would leave a frozen filesystem behind (fsfreeze exits 1 when it was not frozen).
  for (const mount of mounts) await run({ file: "fsfreeze", args: ["--unfreeze", mount.mountPoint], okExitCodes: [1] });
  for (const mount of mounts) await run({ file: "umount", args: ["-l", mount.mountPoint], okExitCodes: [32] });

  const loops = await loopsBackedUnder(prefix);
  for (const mapping of await mappingsOn(loops)) await run({ file: "cryptsetup", args: ["close", mapping], okExitCodes: [4, 5] });
  for (const loop of loops) await run({ file: "losetup", args: ["--detach", loop], okExitCodes: [1] });
}

async function loopsBackedUnder(prefix: string): Promise<string[]> {
  const result = await run({ file: "losetup", args: ["--list", "--json"] });
  if (result.stdout.trim() === "") return [];
  const list = JSON.parse(result.stdout) as { loopdevices?: { name: string; "back-file"?: string }[] };
  return (list.loopdevices ?? []).filter((d) => d["back-file"]?.startsWith(prefix)).map((d) => d.name);
}

/**
 * dm devices stacked on `loops`, topmost first (an integrity volume's crypt mapping sits on
 * its dm-integrity mapping, which sits on the loop device), read from sysfs: works without udev.
 */
async function mappingsOn(loops: readonly string[]): Promise<string[]> {
  const names: string[] = [];
  const visit = async (device: string): Promise<void> => {
    for (const holder of await readdir(`/sys/block/${device}/holders`).catch(() => [] as string[])) {
      await visit(holder);
      const name = (await readFile(`/sys/block/${holder}/dm/name`, "utf8").catch(() => "")).trim();
      if (name && !names.includes(name)) names.push(name);
    }
  };
  for (const loop of loops) await visit(loop.replace("/dev/", ""));
  return names;
}
