import { readFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import ts from "typescript";
import { packageRoot } from "../../lib/paths.js";

/**
 * What the product code needs from the machine it runs on, read from its sources with the
 * TypeScript compiler (so that constants, imports and types are resolved, not grepped):
 *   - every program it runs: the `file` of every object that is a lib/exec `Command`;
 *   - every package it imports at run time.
 * The product code is what the image ships: cmd/, lib/, csi/, keyservice/, netd/ (no tests).
 */

export const PRODUCT_DIRS = ["cmd", "lib", "csi", "keyservice", "netd"] as const;

export interface CommandSite {
  /** file:line of the object literal. */
  readonly where: string;
  /** The programs the `file` property can be (a literal, a constant, or a union of them). */
  readonly programs: readonly string[];
  /** Set when `file` is not a compile-time constant: the expression, to be explained. */
  readonly dynamic?: string;
}

export interface SourceScan {
  readonly commands: readonly CommandSite[];
  /** Bare import specifiers of runtime (not type-only) imports, by package name. */
  readonly packages: ReadonlyMap<string, readonly string[]>;
  /** Relative imports that leave the product directories (the image would lack them). */
  readonly outsideImports: readonly string[];
  readonly files: number;
}

export function scanProductSources(): SourceScan {
  const root = packageRoot();
  const config = ts.getParsedCommandLineOfConfigFile(join(root, "tsconfig.json"), {}, {
    ...ts.sys,
    onUnRecoverableConfigFileDiagnostic: (d) => {
      throw new Error(ts.flattenDiagnosticMessageText(d.messageText, "\n"));
    },
  });
  if (!config) throw new Error("cannot read tsconfig.json");
  const isProduct = (file: string) => {
    const rel = relative(root, file);
    return PRODUCT_DIRS.some((d) => rel.startsWith(`${d}/`)) && !rel.endsWith(".test.ts") && !rel.endsWith(".d.ts");
  };
  const rootNames = config.fileNames.filter(isProduct);
  const program = ts.createProgram({ rootNames, options: { ...config.options, noEmit: true } });
  const checker = program.getTypeChecker();
  const execFile = join(root, "lib", "exec.ts");

  const isCommandType = (type: ts.Type | undefined): boolean => {
    if (!type) return false;
    if (type.isUnion()) return type.types.some(isCommandType);
    const symbol = type.aliasSymbol ?? type.getSymbol();
    return symbol?.getName() === "Command" && (symbol.declarations ?? []).some((d) => d.getSourceFile().fileName === execFile);
  };
  const literals = (type: ts.Type): string[] | undefined => {
    if (type.isStringLiteral()) return [type.value];
    if (type.isUnion()) {
      const parts = type.types.map(literals);
      return parts.every((p) => p !== undefined) ? parts.flat() : undefined;
    }
    return undefined;
  };

  const commands: CommandSite[] = [];
  const packages = new Map<string, string[]>();
  const outsideImports: string[] = [];
  const sources = program.getSourceFiles().filter((sf) => isProduct(sf.fileName));
  for (const sf of sources) {
    const rel = relative(root, sf.fileName);
    const visit = (node: ts.Node): void => {
      if (ts.isObjectLiteralExpression(node)) {
        const fileProp = node.properties.find(
          (p): p is ts.PropertyAssignment => ts.isPropertyAssignment(p) && p.name.getText(sf) === "file",
        );
        const hasArgs = node.properties.some((p) => (ts.isPropertyAssignment(p) || ts.isShorthandPropertyAssignment(p)) && p.name.getText(sf) === "args");
        // A Command by its type where the compiler knows it (builders returning Command,
        // runner arguments), or by its shape where it does not.
        if (fileProp && (isCommandType(checker.getContextualType(node)) || hasArgs)) {
          const line = sf.getLineAndCharacterOfPosition(node.getStart(sf)).line + 1;
          const programs = literals(checker.getTypeAtLocation(fileProp.initializer));
          commands.push({
            where: `${rel}:${line}`,
            programs: programs ?? [],
            ...(programs ? {} : { dynamic: fileProp.initializer.getText(sf) }),
          });
        }
      }
      if ((ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
        const typeOnly = ts.isImportDeclaration(node) ? importIsTypeOnly(node) : node.isTypeOnly;
        const spec = node.moduleSpecifier.text;
        if (spec.startsWith(".")) {
          const target = relative(root, join(dirname(sf.fileName), spec));
          if (!PRODUCT_DIRS.some((d) => target.startsWith(`${d}/`)) && !target.startsWith("proto/gen/")) outsideImports.push(`${rel} → ${spec}`);
        } else if (!typeOnly && !spec.startsWith("node:")) {
          const name = spec.startsWith("@") ? spec.split("/").slice(0, 2).join("/") : (spec.split("/")[0] ?? spec);
          packages.set(name, [...(packages.get(name) ?? []), rel]);
        }
      }
      // Dynamic import("...") of a package.
      if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
        const arg = node.arguments[0];
        if (arg && ts.isStringLiteral(arg) && arg.text.startsWith(".")) {
          const target = relative(root, join(dirname(sf.fileName), arg.text));
          if (!PRODUCT_DIRS.some((d) => target.startsWith(`${d}/`))) outsideImports.push(`${rel} → ${arg.text}`);
        }
      }
      ts.forEachChild(node, visit);
    };
    visit(sf);
  }
  return { commands, packages, outsideImports, files: sources.length };
}

function importIsTypeOnly(node: ts.ImportDeclaration): boolean {
  const clause = node.importClause;
  if (!clause) return false; // a side-effect import runs
  if (clause.isTypeOnly) return true;
  if (clause.name) return false;
  const bindings = clause.namedBindings;
  if (!bindings) return false;
  if (ts.isNamespaceImport(bindings)) return false;
  return bindings.elements.length > 0 && bindings.elements.every((e) => e.isTypeOnly);
}

/** package.json's runtime dependencies. */
export function runtimeDependencies(): Set<string> {
  const pkg = JSON.parse(readFileSync(join(packageRoot(), "package.json"), "utf8")) as { dependencies?: Record<string, string> };
  return new Set(Object.keys(pkg.dependencies ?? {}));
}
