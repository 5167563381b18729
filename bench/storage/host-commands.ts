import type { Command, Runner } from "../../lib/exec.js";
import * as cryptsetup from "../../csi/luks/cryptsetup.js";
import * as blkid from "../../csi/tools/blkid.js";
import * as losetup from "../../csi/tools/losetup.js";
import { median } from "../lib/stats.js";
import type { Table } from "../lib/table.js";
import { measureHeaderCheck, withCloakDevice, type HeaderCheckTimes } from "./header-check.js";
import type { StageSamples } from "./stage-latency.js";

/**
 * What the warm stage's commands cost on the host's real CPU, for comparison with the same
 * commands in the guest: the commands that need no device-mapper, run natively on a loop
 * device carrying cloak's LUKS2 format. `cryptsetup open --test-passphrase` is open without
 * the mapping: the header read, the KDF and the key check. Tells how much the emulation
 * inflates each process start, and so what the warm-stage ratio is made of. The header check
 * (luksDump before, in process now) is measured on the same device.
 */
export interface HostCommandTimes {
  /** Command name (as in the breakdown table) → median ms of `repeats` runs. */
  readonly medianMs: Record<string, number>;
  readonly repeats: number;
  readonly headerCheck: HeaderCheckTimes;
}

export async function measureHostCommands(run: Runner, repeats = 7): Promise<HostCommandTimes> {
  return withCloakDevice(run, async ({ file, device, passphrase }) => {
    const commands: [string, Command][] = [
      ["losetup --associated", losetup.findByFile(file)],
      ["blkid -p", blkid.probe(device)],
      ["cryptsetup open --test-passphrase", cryptsetup.testPassphrase(device, passphrase)],
    ];
    const medianMs: Record<string, number> = {};
    for (const [name, command] of commands) {
      const times: number[] = [];
      for (let i = 0; i < repeats; i++) {
        const started = performance.now();
        await run(command);
        times.push(performance.now() - started);
      }
      medianMs[name] = median(times);
    }
    return { medianMs, repeats, headerCheck: await measureHeaderCheck(run, device, repeats) };
  });
}

export function hostCommandsTable(host: HostCommandTimes, stage: StageSamples | undefined): Table {
  const inGuest = (name: string): number => {
    if (!stage) return Number.NaN;
    const per = stage.warm.cloak.flatMap((s) => s.stage.breakdown.commands.filter((c) => c.name === name).map((c) => c.ms));
    return per.length ? median(per) : Number.NaN;
  };
  const rows = Object.entries(host.medianMs).map(([name, ms]) => {
    const guest = inGuest(name === "cryptsetup open --test-passphrase" ? "cryptsetup open" : name);
    return [name, ms, guest, guest / ms];
  });
  return {
    title: `The warm stage's commands on the host's real CPU vs in the guest, median ms (host: ${host.repeats} runs each)`,
    columns: ["command", "host ms", "guest ms (warm stage)", "guest / host"],
    rows,
    notes: [
      "open --test-passphrase is cryptsetup open without the device-mapper table (the host kernel has none): header, pbkdf2 and key check; its guest figure is the full open",
      "host times include Node starting the process (lib/exec.ts), as in the plugin; guest figures are per command from the warm cloak stages above",
    ],
  };
}
