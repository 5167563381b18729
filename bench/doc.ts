/**
 * `make bench-doc`: rewrites each marked section of BENCHMARKS.md from the newest result file
 * of that benchmark under bench/results/. A section without a result keeps its text.
 */
import { readFile, writeFile } from "node:fs/promises";
import { join, relative } from "node:path";
import { packageRoot } from "../lib/paths.js";
import { renderAnyResult, replaceSection, sectionNames } from "./lib/doc.js";
import { latestResult } from "./lib/result.js";

async function main(): Promise<void> {
  const root = packageRoot();
  const path = join(root, "BENCHMARKS.md");
  let doc = await readFile(path, "utf8");
  for (const name of sectionNames(doc)) {
    const latest = await latestResult(name);
    if (!latest) {
      process.stdout.write(`bench-doc: no result for ${name} yet; its section is unchanged\n`);
      continue;
    }
    const file = relative(root, latest.file);
    doc = replaceSection(doc, name, renderAnyResult(latest.json, file));
    process.stdout.write(`bench-doc: ${name} from ${file}\n`);
  }
  await writeFile(path, doc);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench-doc: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
