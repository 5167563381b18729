/**
 * Splits a Kubernetes list response (`{"kind":"NodeList","metadata":{...},"items":[...]}`) as
 * its bytes arrive: each element of the top-level `items` array is parsed on its own and handed
 * over as soon as it is complete, and everything else (kind, metadata with its resourceVersion
 * and continue token) is parsed once at the end from what is left with `items` emptied.
 *
 * Why not `JSON.parse` of the whole body: a page of 500 real Node objects is megabytes of text
 * and several times that as objects, all alive at once, while the caller keeps a few fields of
 * each. Parsed item by item, the largest thing alive is one Node.
 *
 * The scanner looks at bytes, not characters: every byte that matters to JSON's structure
 * (quotes, backslash, brackets, comma) is ASCII, and no byte of a multi-byte UTF-8 sequence is.
 */
export class ListBodySplitter {
  private depth = 0;
  private inString = false;
  private escaped = false;
  /** A string at depth 1 (a key, or a top-level value) continuing from the last chunk. */
  private keyPart: string | undefined;
  private lastKey = "";
  /** Depth of the items array's elements (2) while inside it, else 0. */
  private itemsDepth = 0;
  private item: Buffer[] | undefined;
  private readonly skeleton: Buffer[] = [];
  private items = 0;

  constructor(private readonly onItem: (item: unknown) => void) {}

  push(chunk: Buffer): void {
    // The state lives in locals while the loop runs: this walks every byte of the list.
    let { depth, inString, escaped, itemsDepth } = this;
    let keyFrom = this.keyPart === undefined ? -1 : 0;
    let skeletonFrom = this.item ? -1 : 0;
    let itemFrom = this.item ? 0 : -1;
    const length = chunk.length;
    for (let i = 0; i < length; i++) {
      if (inString) {
        for (; i < length; i++) {
          const c = chunk[i];
          if (escaped) escaped = false;
          else if (c === BACKSLASH) escaped = true;
          else if (c === QUOTE) break;
        }
        if (i === length) break;
        inString = false;
        if (keyFrom >= 0) {
          this.lastKey = (this.keyPart ?? "") + chunk.toString("latin1", keyFrom, i);
          this.keyPart = undefined;
          keyFrom = -1;
        }
        continue;
      }
      const b = chunk[i];
      if (b === QUOTE) {
        inString = true;
        if (depth === 1) {
          keyFrom = i + 1;
          this.keyPart = "";
        }
      } else if (b === OPEN_BRACE || b === OPEN_BRACKET) {
        if (itemsDepth !== 0 && depth === itemsDepth) {
          // An element of items begins: the skeleton so far is kept, the element collected.
          if (skeletonFrom >= 0) this.skeleton.push(chunk.subarray(skeletonFrom, i));
          skeletonFrom = -1;
          this.item = [];
          itemFrom = i;
        }
        depth++;
        if (b === OPEN_BRACKET && depth === 2 && this.lastKey === "items") itemsDepth = 2;
      } else if (b === CLOSE_BRACE || b === CLOSE_BRACKET) {
        depth--;
        if (depth < 0) throw new SyntaxError("list body: unbalanced brackets");
        if (itemFrom >= 0 && depth === itemsDepth) {
          (this.item ?? []).push(chunk.subarray(itemFrom, i + 1));
          this.emit();
          itemFrom = -1;
          skeletonFrom = i + 1;
        } else if (depth === 1 && itemsDepth !== 0) {
          itemsDepth = 0;
        }
      } else if (itemsDepth !== 0 && depth === itemsDepth) {
        // Between elements: commas are left out of the skeleton (it would read `[,,]`), and
        // anything but whitespace means an element that is not an object.
        if (b === COMMA) {
          if (skeletonFrom >= 0) this.skeleton.push(chunk.subarray(skeletonFrom, i));
          skeletonFrom = i + 1;
        } else if (!isSpace(b as number)) {
          throw new SyntaxError("list body: an element of items is not an object");
        }
      }
    }
    if (itemFrom >= 0) this.item?.push(chunk.subarray(itemFrom));
    else if (skeletonFrom >= 0 && skeletonFrom < length) this.skeleton.push(chunk.subarray(skeletonFrom));
    if (inString && keyFrom >= 0) this.keyPart = (this.keyPart ?? "") + chunk.toString("latin1", keyFrom);
    Object.assign(this, { depth, inString, escaped, itemsDepth });
  }

  /** Everything but the items, parsed; throws when the body was cut short. */
  end(): { readonly body: Record<string, unknown>; readonly items: number } {
    if (this.depth !== 0 || this.inString || this.item) throw new SyntaxError("list body ended early");
    const body = JSON.parse(Buffer.concat(this.skeleton).toString("utf8")) as unknown;
    if (typeof body !== "object" || body === null || Array.isArray(body)) throw new SyntaxError("list body is not an object");
    return { body: body as Record<string, unknown>, items: this.items };
  }

  private emit(): void {
    const parts = this.item ?? [];
    this.item = undefined;
    const text = (parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts)).toString("utf8");
    this.items++;
    this.onItem(JSON.parse(text));
  }
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const COMMA = 0x2c;

function isSpace(b: number): boolean {
  return b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09;
}

/**
 * Splits a watch response (one JSON event per line, as the API server streams them) into
 * parsed events, carrying a partial line over to the next chunk.
 */
export class LineSplitter {
  private carry: Buffer[] = [];

  constructor(private readonly onLine: (value: unknown) => void) {}

  push(chunk: Buffer): void {
    let from = 0;
    for (let nl = chunk.indexOf(0x0a, from); nl >= 0; nl = chunk.indexOf(0x0a, from)) {
      const part = chunk.subarray(from, nl);
      const line = this.carry.length > 0 ? Buffer.concat([...this.carry, part]) : part;
      this.carry = [];
      from = nl + 1;
      if (line.length > 0 && !(line.length === 1 && line[0] === 0x0d)) this.onLine(JSON.parse(line.toString("utf8")));
    }
    if (from < chunk.length) this.carry.push(chunk.subarray(from));
  }

  /** A last line without its newline still counts. */
  end(): void {
    if (this.carry.length === 0) return;
    const line = Buffer.concat(this.carry).toString("utf8").trim();
    this.carry = [];
    if (line) this.onLine(JSON.parse(line));
  }
}
