import { AbortedError, InvalidArgumentError } from "../../lib/errors.js";

const TOKEN_PREFIX = "from:";

/**
 * One page of `items`, which the caller sorts by id. The token names the id the next page
 * starts from, so paging stays correct when entries are added or deleted between calls (the
 * next page starts at the first id at or after it). A token cloak did not make is Aborted, as
 * CSI specifies for ListVolumes and ListSnapshots.
 */
export function page<T>(
  items: readonly T[],
  idOf: (item: T) => string,
  request: { maxEntries: number; startingToken: string },
): { entries: T[]; nextToken: string } {
  if (request.maxEntries < 0) throw new InvalidArgumentError("max_entries must not be negative");
  let start = 0;
  if (request.startingToken !== "") {
    if (!request.startingToken.startsWith(TOKEN_PREFIX)) {
      throw new AbortedError(`starting_token ${JSON.stringify(request.startingToken)} was not issued by this plugin`);
    }
    const from = request.startingToken.slice(TOKEN_PREFIX.length);
    start = items.findIndex((item) => idOf(item) >= from);
    if (start < 0) start = items.length;
  }
  const end = request.maxEntries === 0 ? items.length : Math.min(items.length, start + request.maxEntries);
  const next = items[end];
  return { entries: items.slice(start, end), nextToken: next === undefined ? "" : `${TOKEN_PREFIX}${idOf(next)}` };
}
