/**
 * A benchmark's tables as data, printed to the terminal as aligned text and written into
 * BENCHMARKS.md as markdown from the same rows, so that the two never disagree.
 */
export type Cell = string | number;

export interface Table {
  readonly title: string;
  readonly columns: readonly string[];
  readonly rows: readonly (readonly Cell[])[];
  /** Lines printed under the table (targets, caveats). */
  readonly notes?: readonly string[];
}

/** Numbers are formatted with `digits` decimals (fewer for large ones) and right-aligned. */
export function formatCell(cell: Cell, digits = 2): string {
  if (typeof cell === "string") return cell;
  if (!Number.isFinite(cell)) return "–";
  if (Number.isInteger(cell)) return String(cell);
  const abs = Math.abs(cell);
  return cell.toFixed(abs >= 1000 ? 0 : abs >= 100 ? 1 : digits);
}

export function renderText(table: Table): string {
  const cells = table.rows.map((row) => row.map((cell) => formatCell(cell)));
  const widths = table.columns.map((column, i) => Math.max(column.length, ...cells.map((row) => (row[i] ?? "").length)));
  const numeric = table.columns.map((_, i) => table.rows.length > 0 && table.rows.every((row) => typeof row[i] === "number"));
  const line = (values: readonly string[], header: boolean): string =>
    values
      .map((value, i) => (numeric[i] && !header ? value.padStart(widths[i] ?? 0) : value.padEnd(widths[i] ?? 0)))
      .join("  ")
      .trimEnd();
  return [
    table.title,
    "",
    line(table.columns, true),
    line(widths.map((w) => "-".repeat(w)), true),
    ...cells.map((row) => line(row, false)),
    ...(table.notes?.length ? ["", ...table.notes] : []),
    "",
  ].join("\n");
}

export function renderMarkdown(table: Table): string {
  const escape = (text: string): string => text.replace(/\|/g, "\\|");
  const numeric = table.columns.map((_, i) => table.rows.length > 0 && table.rows.every((row) => typeof row[i] === "number"));
  return [
    `**${escape(table.title)}**`,
    "",
    `| ${table.columns.map(escape).join(" | ")} |`,
    `|${numeric.map((n) => (n ? " ---: " : " --- ")).join("|")}|`,
    ...table.rows.map((row) => `| ${row.map((cell) => escape(formatCell(cell))).join(" | ")} |`),
    ...(table.notes?.length ? ["", ...table.notes.map((note) => `- ${escape(note)}`)] : []),
    "",
  ].join("\n");
}
