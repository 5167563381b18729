import { createHash, createPrivateKey, X509Certificate } from "node:crypto";
import { readFile, stat } from "node:fs/promises";
import type { experimental } from "@grpc/grpc-js";
import { FailedPreconditionError } from "./errors.js";
import type { Logger } from "./log.js";

type CertificateProvider = experimental.CertificateProvider;
type CaListener = experimental.CaCertificateUpdateListener;
type IdentityListener = experimental.IdentityCertificateUpdateListener;

/** PEM files of one TLS endpoint. Either side may omit its identity or the CA, not both. */
export interface TlsFilePaths {
  /** CA bundle that peers' certificates must chain to. */
  readonly caFile?: string | undefined;
  /** This side's certificate chain and its private key; set both or neither. */
  readonly certFile?: string | undefined;
  readonly keyFile?: string | undefined;
}

export interface TlsMaterial {
  readonly ca?: Buffer | undefined;
  readonly cert?: Buffer | undefined;
  readonly key?: Buffer | undefined;
  /** The leaf certificate, parsed: for logs (serial, expiry) and checks. */
  readonly leaf?: X509Certificate | undefined;
}

export interface TlsFileWatcherOptions {
  readonly files: TlsFilePaths;
  readonly logger: Logger;
  /** How often the files are checked for changes; 1 s by default. */
  readonly pollMs?: number;
}

/**
 * TLS certificate files that are re-read when they change, as a grpc-js CertificateProvider
 * (the API grpc-js 1.14 offers, under `experimental`, for credentials that change without a
 * restart; the server applies each update with `setSecureContext`, the client uses the latest
 * for each new connection).
 *
 * Why not grpc-js's own FileWatcherCertificateProvider: it publishes whatever it read, so a
 * certificate read before a rotation and a key read after it (or a half-written file) turn the
 * credentials off until the next refresh, and every connection is refused meanwhile. Here a
 * change is published only when the certificate, key and CA parse and the key matches the
 * certificate; otherwise the previous material stays in force and the error is logged once.
 *
 * Change detection is by polling stat() through the path: Kubernetes updates a Secret volume by
 * swapping its `..data` symlink, which inotify on the old file never reports, but which changes
 * the inode the path resolves to. Polling three stats a second costs nothing measurable.
 */
export class TlsFileWatcher implements CertificateProvider {
  private material: TlsMaterial;
  private signature: string;
  private readonly caListeners = new Set<CaListener>();
  private readonly identityListeners = new Set<IdentityListener>();
  private readonly timer: NodeJS.Timeout;
  private checking = false;
  private lastError: string | undefined;

  private constructor(
    private readonly options: TlsFileWatcherOptions,
    initial: TlsMaterial,
    signature: string,
  ) {
    this.material = initial;
    this.signature = signature;
    this.timer = setInterval(() => void this.check(), options.pollMs ?? 1000);
    this.timer.unref();
  }

  /** Reads and checks the files once; throws FailedPrecondition (startup stops) when they are unusable. */
  static async open(options: TlsFileWatcherOptions): Promise<TlsFileWatcher> {
    const { caFile, certFile, keyFile } = options.files;
    if ((certFile === undefined) !== (keyFile === undefined)) {
      throw new FailedPreconditionError("a TLS certificate and its key must be given together");
    }
    if (certFile === undefined && caFile === undefined) {
      throw new FailedPreconditionError("TLS needs a certificate and key, a CA, or both");
    }
    const signature = await fileSignature(options.files.caFile, options.files.certFile, options.files.keyFile);
    const material = await loadTlsMaterial(options.files);
    await warnIfWorldReadable(keyFile, options.logger);
    logLoaded(options.logger, material, "TLS certificates loaded");
    return new TlsFileWatcher(options, material, signature);
  }

  current(): TlsMaterial {
    return this.material;
  }

  /** Checks the files now instead of at the next poll; resolves when done. */
  async check(): Promise<void> {
    if (this.checking) return;
    this.checking = true;
    try {
      const signature = await fileSignature(this.options.files.caFile, this.options.files.certFile, this.options.files.keyFile);
      if (signature === this.signature) return;
      const material = await loadTlsMaterial(this.options.files);
      // Only a complete, consistent set is recorded as seen: a half-rotated set is read again
      // at the next poll, by which time the swap has finished.
      this.signature = signature;
      this.lastError = undefined;
      if (sameMaterial(material, this.material)) return;
      this.material = material;
      logLoaded(this.options.logger, material, "TLS certificates reloaded");
      this.publish();
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      if (message !== this.lastError) {
        this.options.logger.error({ err: message }, "TLS files changed but are unusable; keeping the previous certificates");
        this.lastError = message;
      }
    } finally {
      this.checking = false;
    }
  }

  close(): void {
    clearInterval(this.timer);
    this.caListeners.clear();
    this.identityListeners.clear();
  }

  addCaCertificateListener(listener: CaListener): void {
    this.caListeners.add(listener);
    process.nextTick(listener, this.caUpdate());
  }

  removeCaCertificateListener(listener: CaListener): void {
    this.caListeners.delete(listener);
  }

  addIdentityCertificateListener(listener: IdentityListener): void {
    this.identityListeners.add(listener);
    process.nextTick(listener, this.identityUpdate());
  }

  removeIdentityCertificateListener(listener: IdentityListener): void {
    this.identityListeners.delete(listener);
  }

  private publish(): void {
    const ca = this.caUpdate();
    const identity = this.identityUpdate();
    for (const listener of this.caListeners) listener(ca);
    for (const listener of this.identityListeners) listener(identity);
  }

  private caUpdate(): experimental.CaCertificateUpdate | null {
    return this.material.ca ? { caCertificate: this.material.ca } : null;
  }

  private identityUpdate(): experimental.IdentityCertificateUpdate | null {
    const { cert, key } = this.material;
    return cert && key ? { certificate: cert, privateKey: key } : null;
  }
}

/** Reads the files and checks that they parse and belong together. */
export async function loadTlsMaterial(files: TlsFilePaths): Promise<TlsMaterial> {
  const [ca, cert, key] = await Promise.all([
    readPem(files.caFile, "CA certificate"),
    readPem(files.certFile, "certificate"),
    readPem(files.keyFile, "private key"),
  ]);
  let leaf: X509Certificate | undefined;
  if (cert && key) {
    leaf = parseCertificate(cert, files.certFile);
    let privateKey;
    try {
      privateKey = createPrivateKey(key);
    } catch (err) {
      throw new FailedPreconditionError(`private key ${files.keyFile} does not parse: ${(err as Error).message}`);
    }
    if (!leaf.checkPrivateKey(privateKey)) {
      throw new FailedPreconditionError(`private key ${files.keyFile} does not belong to certificate ${files.certFile}`);
    }
  }
  if (ca) parseCertificate(ca, files.caFile);
  return { ca, cert, key, leaf };
}

async function readPem(path: string | undefined, what: string): Promise<Buffer | undefined> {
  if (path === undefined) return undefined;
  try {
    return await readFile(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? "error";
    throw new FailedPreconditionError(`${what} file ${path} cannot be read (${code})`);
  }
}

function parseCertificate(pem: Buffer, path: string | undefined): X509Certificate {
  try {
    return new X509Certificate(pem);
  } catch (err) {
    throw new FailedPreconditionError(`certificate ${path} does not parse: ${(err as Error).message}`);
  }
}

/**
 * What the paths resolve to now, as one string that changes when a file is rewritten or a
 * symlink above it is swapped; a missing file is part of the signature, not an error.
 */
export async function fileSignature(...paths: readonly (string | undefined)[]): Promise<string> {
  const parts: string[] = [];
  for (const path of paths) {
    if (path === undefined) continue;
    const s = await stat(path).catch(() => undefined);
    parts.push(s ? `${s.dev}:${s.ino}:${s.size}:${s.mtimeMs}:${s.ctimeMs}` : "missing");
  }
  return parts.join("|");
}

function sameMaterial(a: TlsMaterial, b: TlsMaterial): boolean {
  return digest(a) === digest(b);
}

function digest(material: TlsMaterial): string {
  const hash = createHash("sha256");
  for (const part of [material.ca, material.cert, material.key]) hash.update(part ?? "-").update("\0");
  return hash.digest("hex");
}

function logLoaded(logger: Logger, material: TlsMaterial, message: string): void {
  const leaf = material.leaf;
  logger.info(
    leaf ? { subject: leaf.subject, serial: leaf.serialNumber, notAfter: leaf.validTo, withCa: material.ca !== undefined } : { withCa: true },
    message,
  );
}

/** A warning, not a refusal: cert-manager's Secrets mount 0644 unless told otherwise. */
async function warnIfWorldReadable(keyFile: string | undefined, logger: Logger): Promise<void> {
  if (keyFile === undefined) return;
  const mode = (await stat(keyFile)).mode;
  if ((mode & 0o004) !== 0) {
    logger.warn({ keyFile, mode: (mode & 0o777).toString(8) }, "TLS private key is world-readable; mount it with defaultMode 0400");
  }
}
