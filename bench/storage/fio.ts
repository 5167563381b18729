import type { Command, CommandResult } from "../../lib/exec.js";

/**
 * fio as data: the job shapes the storage benchmark runs, the command for one job, and the
 * figures read back from fio's JSON output. The shapes are the ones K-Bench's dp_fio and
 * kubestr's fio check use: 4 KiB random I/O at queue depth 32 for IOPS, 1 MiB sequential I/O
 * for bandwidth, and a 70/30 read/write mix.
 */
export interface FioShape {
  readonly name: string;
  readonly rw: "randread" | "randwrite" | "read" | "write" | "randrw";
  readonly blockSize: string;
  readonly iodepth: number;
  readonly rwmixread?: number;
}

export const FIO_SHAPES: readonly FioShape[] = [
  { name: "4k randread", rw: "randread", blockSize: "4k", iodepth: 32 },
  { name: "4k randwrite", rw: "randwrite", blockSize: "4k", iodepth: 32 },
  { name: "1M seq read", rw: "read", blockSize: "1M", iodepth: 32 },
  { name: "1M seq write", rw: "write", blockSize: "1M", iodepth: 32 },
  { name: "4k randrw 70/30", rw: "randrw", blockSize: "4k", iodepth: 32, rwmixread: 70 },
];

export interface FioJob {
  readonly shape: FioShape;
  /** A block device: the raw loop device or the dm-crypt mapping on it. */
  readonly device: string;
  /** The byte range the job uses, so that raw and encrypted runs touch the same bytes. */
  readonly offsetBytes: number;
  readonly sizeBytes: number;
  readonly runtimeSeconds: number;
  readonly rampSeconds: number;
}

/** One time-based job: libaio, O_DIRECT (no page cache between fio and the device), one worker. */
export function fioCommand(job: FioJob): Command {
  const { shape } = job;
  const args = [
    `--name=${shape.rw}-${shape.blockSize}`,
    `--filename=${job.device}`,
    "--ioengine=libaio",
    "--direct=1",
    `--rw=${shape.rw}`,
    `--bs=${shape.blockSize}`,
    `--iodepth=${shape.iodepth}`,
    "--numjobs=1",
    `--offset=${job.offsetBytes}`,
    `--size=${job.sizeBytes}`,
    "--time_based",
    `--runtime=${job.runtimeSeconds}`,
    `--ramp_time=${job.rampSeconds}`,
    "--randrepeat=0",
    "--group_reporting",
    "--output-format=json",
  ];
  if (shape.rwmixread !== undefined) args.push(`--rwmixread=${shape.rwmixread}`);
  return { file: "fio", args, timeoutMs: (job.runtimeSeconds + job.rampSeconds + 120) * 1000 };
}

/** Writes the whole range once, so that reads hit allocated blocks rather than holes. */
export function fioPrefill(device: string, offsetBytes: number, sizeBytes: number): Command {
  return {
    file: "fio",
    args: [
      "--name=prefill",
      `--filename=${device}`,
      "--ioengine=libaio",
      "--direct=1",
      "--rw=write",
      "--bs=1M",
      "--iodepth=16",
      `--offset=${offsetBytes}`,
      `--size=${sizeBytes}`,
      "--output-format=json",
    ],
    timeoutMs: 900_000,
  };
}

export interface FioDirection {
  readonly mibPerSecond: number;
  readonly iops: number;
  /** Completion latency percentiles in microseconds. */
  readonly clatP50Us: number;
  readonly clatP99Us: number;
}

export interface FioFigures {
  readonly read: FioDirection;
  readonly write: FioDirection;
  /** Both directions together: what the shape moved per second. */
  readonly mibPerSecond: number;
  readonly iops: number;
}

interface FioJsonDirection {
  bw_bytes?: number;
  iops?: number;
  clat_ns?: { percentile?: Record<string, number> };
}

/** Reads fio's `--output-format=json` (fio 3.x). Throws when the job reported an error. */
export function parseFioJson(result: CommandResult | string): FioFigures {
  const text = typeof result === "string" ? result : result.stdout;
  // fio may print notes ("fio: ...") before the JSON document.
  const start = text.indexOf("{");
  if (start < 0) throw new Error(`fio printed no JSON: ${text.slice(0, 200)}`);
  const doc = JSON.parse(text.slice(start)) as { jobs?: { jobname?: string; error?: number; read?: FioJsonDirection; write?: FioJsonDirection }[] };
  const job = doc.jobs?.[0];
  if (!job) throw new Error("fio's JSON has no job");
  if (job.error) throw new Error(`fio job ${job.jobname ?? "?"} failed with error ${job.error}`);
  const direction = (d: FioJsonDirection | undefined): FioDirection => ({
    mibPerSecond: (d?.bw_bytes ?? 0) / 1048576,
    iops: d?.iops ?? 0,
    clatP50Us: (d?.clat_ns?.percentile?.["50.000000"] ?? Number.NaN) / 1000,
    clatP99Us: (d?.clat_ns?.percentile?.["99.000000"] ?? Number.NaN) / 1000,
  });
  const read = direction(job.read);
  const write = direction(job.write);
  return { read, write, mibPerSecond: read.mibPerSecond + write.mibPerSecond, iops: read.iops + write.iops };
}
