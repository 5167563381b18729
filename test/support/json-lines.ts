import type { Readable } from "node:stream";

/**
 * Follows a child's stdout: every chunk as text (for error messages and for asserting that
 * something never appears), and every complete line that is a JSON object (pino's log lines).
 */
export function followJsonLines(stream: Readable, on: { text: (chunk: string) => void; json: (line: Record<string, unknown>) => void }): void {
  let pending = "";
  stream.setEncoding("utf8").on("data", (chunk: string) => {
    on.text(chunk);
    pending += chunk;
    const lines = pending.split("\n");
    pending = lines.pop() ?? "";
    for (const line of lines) {
      if (!line.startsWith("{")) continue;
      try {
        on.json(JSON.parse(line) as Record<string, unknown>);
      } catch {
        // not a log line
      }
    }
  });
}
