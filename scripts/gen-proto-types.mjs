// Generates TypeScript types for every .proto under proto/ into proto/gen/, with the same
// loader options lib/proto.ts uses at run time, so that the types describe exactly the
// objects grpc-js hands us.
import { execFileSync } from "node:child_process";
import { readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const protoDir = join(root, "proto");
const outDir = join(protoDir, "gen");
const options = JSON.parse(readFileSync(join(protoDir, "loader-options.json"), "utf8"));
const files = readdirSync(protoDir).filter((f) => f.endsWith(".proto")).sort();

const flags = [];
for (const [name, value] of Object.entries(options)) {
  if (value === true) flags.push(`--${name}`);
  else flags.push(`--${name}`, String(value));
}
rmSync(outDir, { recursive: true, force: true });
execFileSync(
  join(root, "node_modules", ".bin", "proto-loader-gen-types"),
  [...flags, "--grpcLib", "@grpc/grpc-js", "-I", protoDir, "-O", outDir, ...files],
  { stdio: "inherit" },
);

// The generator writes extensionless relative imports; NodeNext resolution wants ".js".
for (const entry of readdirSync(outDir, { recursive: true, withFileTypes: true })) {
  if (!entry.isFile() || !entry.name.endsWith(".ts")) continue;
  const file = join(entry.parentPath, entry.name);
  const text = readFileSync(file, "utf8");
  writeFileSync(file, text.replace(/from '(\.{1,2}\/[^']+)'/g, "from '$1.js'"));
}
