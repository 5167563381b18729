import { readFileSync } from "node:fs";
import { join } from "node:path";
import { loadPackageDefinition } from "@grpc/grpc-js";
import { loadSync, type Options } from "@grpc/proto-loader";
import { InvalidArgumentError } from "./errors.js";
import { packageRoot } from "./paths.js";

const protoDir = join(packageRoot(), "proto");

/**
 * The same options the type generator used, so proto/gen's types match what arrives. The JSON
 * names the types ("String"); at run time proto-loader (protobufjs' toObject) compares with the
 * constructors themselves (`options.enums === String`), so the names are turned into them here —
 * left as strings, enums would arrive as numbers and int64 as Long objects.
 */
const loaderOptions: Options = withConstructors(
  JSON.parse(readFileSync(join(protoDir, "loader-options.json"), "utf8")) as Record<string, unknown>,
);

function withConstructors(raw: Record<string, unknown>): Options {
  const constructors: Record<string, unknown> = { String, Number };
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(raw)) {
    out[key] = typeof value === "string" && value in constructors ? constructors[value] : value;
  }
  return out as Options;
}

/**
 * Loads one of proto/*.proto. `T` is the generated ProtoGrpcType of that file
 * (proto/gen/<name>.ts), which describes exactly what this returns.
 */
export function loadProto<T>(file: string): T {
  const definition = loadSync(join(protoDir, file), { ...loaderOptions, includeDirs: [protoDir] });
  return loadPackageDefinition(definition) as unknown as T;
}

/**
 * int64 fields arrive as decimal strings (longs: String). Sizes are converted here, once, to
 * numbers, which hold every byte count below 8 PiB exactly; anything larger or negative is
 * refused rather than silently rounded.
 */
export function int64ToNumber(value: string | number | undefined, field: string): number {
  const text = String(value ?? "0");
  if (!/^-?\d+$/.test(text)) throw new InvalidArgumentError(`${field} is not an integer: ${text}`);
  const n = Number(text);
  if (!Number.isSafeInteger(n)) throw new InvalidArgumentError(`${field} is too large: ${text}`);
  return n;
}
