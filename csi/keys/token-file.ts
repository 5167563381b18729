import { readFile } from "node:fs/promises";
import { UnauthenticatedError } from "../../lib/errors.js";
import { jwtExpiry } from "../../lib/jwt.js";
import { fileSignature } from "../../lib/tls-files.js";

/**
 * The node plugin's proof of where it runs: a service-account token that kubelet projects into
 * the pod (audience: the key service; bound to the pod, so the API server puts the pod's node in
 * it) and rewrites well before it expires. Read when its file changes — kubelet swaps a
 * `..data` symlink, so the path's signature (what it resolves to) is compared, not inotify —
 * and at most every `checkMs` otherwise; never sent once expired.
 */
export interface TokenFile {
  /** The token to send now. UnauthenticatedError when the file is missing, empty or expired. */
  current(): Promise<string>;
  /** Reads the file again whatever its signature (after the service refused the token). */
  reload(): Promise<string>;
}

export function openTokenFile(path: string, o: { checkMs?: number; now?: () => number } = {}): TokenFile {
  const checkMs = o.checkMs ?? 1000;
  const now = o.now ?? Date.now;
  let cached: { token: string; signature: string; expiresAt: number | undefined; checkedAt: number } | undefined;

  const load = async (): Promise<string> => {
    let signature: string;
    let token: string;
    try {
      signature = await fileSignature(path);
      token = (await readFile(path, "utf8")).trim();
    } catch (err) {
      throw new UnauthenticatedError(`the key service token ${path} cannot be read (${(err as NodeJS.ErrnoException).code ?? String(err)}): is the projected token volume mounted?`);
    }
    if (token === "") throw new UnauthenticatedError(`the key service token ${path} is empty`);
    cached = { token, signature, expiresAt: jwtExpiry(token), checkedAt: now() };
    return token;
  };

  const fresh = (token: string, expiresAt: number | undefined): string => {
    if (expiresAt !== undefined && expiresAt <= now()) {
      throw new UnauthenticatedError(`the key service token ${path} expired at ${new Date(expiresAt).toISOString()} and kubelet has not renewed it`);
    }
    return token;
  };

  return {
    async current() {
      if (cached && now() - cached.checkedAt < checkMs && (cached.expiresAt === undefined || cached.expiresAt > now())) return cached.token;
      if (cached) {
        const signature = await fileSignature(path).catch(() => "");
        if (signature === cached.signature) {
          cached.checkedAt = now();
          return fresh(cached.token, cached.expiresAt);
        }
      }
      await load();
      return fresh(cached?.token ?? "", cached?.expiresAt);
    },
    async reload() {
      await load();
      return fresh(cached?.token ?? "", cached?.expiresAt);
    },
  };
}
