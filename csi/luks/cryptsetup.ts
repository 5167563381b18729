import type { Command } from "../../lib/exec.js";
import { LUKS_FORMAT, type LuksLabel } from "./policy.js";

/**
 * cryptsetup invocations as data. Passphrases always travel on stdin (`--key-file -`, which
 * reads stdin to EOF, so binary keys are safe) and never in argv.
 */

const CRYPTSETUP = "cryptsetup";

/** Exit statuses documented in cryptsetup(8). */
export const CRYPTSETUP_EXIT = {
  wrongParameters: 1,
  noPermission: 2,
  outOfMemory: 3,
  wrongDevice: 4,
  deviceBusy: 5,
} as const;

export interface FormatSpec {
  readonly device: string;
  /** Becomes the LUKS UUID, which is also the key id. */
  readonly uuid: string;
  readonly passphrase: Buffer;
  readonly integrity: boolean;
  /** "fresh" (the default), or for integrity "wiping:0": the tags are initialised afterwards (integrity-wipe.ts). */
  readonly label?: LuksLabel;
}

export function luksFormat(spec: FormatSpec): Command {
  const args = [
    "luksFormat",
    "--batch-mode",
    "--type", LUKS_FORMAT.type,
    "--cipher", LUKS_FORMAT.cipher,
    "--key-size", String(LUKS_FORMAT.keySizeBits),
    "--sector-size", String(LUKS_FORMAT.sectorSize),
    "--hash", LUKS_FORMAT.hash,
    "--pbkdf", LUKS_FORMAT.pbkdf,
    "--pbkdf-force-iterations", String(LUKS_FORMAT.pbkdfIterations),
    "--uuid", spec.uuid,
    "--label", spec.label ?? ("fresh" satisfies LuksLabel),
    "--subsystem", LUKS_FORMAT.subsystem,
    "--key-file", "-",
  ];
  // dm-integrity must initialise its tags, a full write of the device: minutes for large ones.
  // cryptsetup's own wipe cannot be resumed, so cloak does it, recording its progress.
  if (spec.integrity) args.push("--integrity", LUKS_FORMAT.integrityArgument, "--integrity-no-wipe");
  return { file: CRYPTSETUP, args: [...args, spec.device], input: spec.passphrase, timeoutMs: 120_000 };
}

export function luksDumpJson(device: string): Command {
  return { file: CRYPTSETUP, args: ["luksDump", "--dump-json-metadata", device] };
}

export interface OpenSpec {
  readonly device: string;
  readonly name: string;
  readonly passphrase: Buffer;
  /**
   * Bypass dm-crypt's read/write workqueues. Faster on fast devices (what Constellation
   * enables), measured by bench/; off by default until the benchmark says otherwise here.
   */
  readonly bypassWorkqueues: boolean;
  /**
   * dm-integrity without its journal: for initialising the tags only (every sector is written
   * once and the progress recorded after a flush), never for a volume in use.
   */
  readonly integrityNoJournal?: boolean;
}

export function luksOpen(spec: OpenSpec): Command {
  const args = ["open", "--type", LUKS_FORMAT.type, "--key-file", "-"];
  if (spec.bypassWorkqueues) args.push("--perf-no_read_workqueue", "--perf-no_write_workqueue");
  if (spec.integrityNoJournal) args.push("--integrity-no-journal");
  return { file: CRYPTSETUP, args: [...args, spec.device, spec.name], input: spec.passphrase };
}

/** Checks a passphrase against the header without opening anything (needs no device-mapper). */
export function testPassphrase(device: string, passphrase: Buffer): Command {
  return { file: CRYPTSETUP, args: ["open", "--test-passphrase", "--type", LUKS_FORMAT.type, "--key-file", "-", device], input: passphrase };
}

export function luksClose(name: string): Command {
  return { file: CRYPTSETUP, args: ["close", name] };
}

/** Exits 1 for "not LUKS2": an answer, not a failure. */
export function isLuks2(device: string): Command {
  return { file: CRYPTSETUP, args: ["isLuks", "--type", LUKS_FORMAT.type, device], okExitCodes: [1] };
}

/** Label and subsystem are written together: `config` clears whichever one is left out. */
export function setLabel(device: string, label: LuksLabel): Command {
  return { file: CRYPTSETUP, args: ["config", "--label", label, "--subsystem", LUKS_FORMAT.subsystem, device] };
}

/**
 * Removes every keyslot: the header then opens with no key. Only the crash tests use it, to
 * leave the state a kill inside luksFormat leaves (a header written, its keyslot not yet).
 */
export function luksErase(device: string): Command {
  return { file: CRYPTSETUP, args: ["luksErase", "--batch-mode", device] };
}

/** Grows an open mapping to the size of its (already grown) backing device. */
export function resize(name: string, passphrase: Buffer): Command {
  return { file: CRYPTSETUP, args: ["resize", "--key-file", "-", name], input: passphrase };
}

export function version(): Command {
  return { file: CRYPTSETUP, args: ["--version"], timeoutMs: 10_000 };
}
