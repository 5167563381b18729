import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import {
  createCertificateAuthority,
  issueClientCertificate,
  issueServerCertificate,
  loadCertificateAuthority,
  parseClientName,
  validityDays,
  type CertificateAuthority,
  type Validity,
} from "../../keyservice/pki.js";

/** Paths of one TLS identity on disk, in the tls.crt/tls.key/ca.crt layout. */
export interface TlsPaths {
  readonly certFile: string;
  readonly keyFile: string;
  readonly caFile: string;
}

const DAY = 86_400_000;

/** Validities for the handshake tests, relative to now. */
export const VALIDITY = {
  good: (): Validity => validityDays(30),
  expired: (): Validity => ({ notBefore: new Date(Date.now() - 10 * DAY), notAfter: new Date(Date.now() - DAY) }),
  notYetValid: (): Validity => ({ notBefore: new Date(Date.now() + DAY), notAfter: new Date(Date.now() + 10 * DAY) }),
};

/**
 * A throwaway PKI written under `dir`: CAs, a server certificate for localhost/127.0.0.1 and
 * client certificates for any identity and validity, made with the same code `cloak keys`
 * uses. For tests of what a real TLS handshake accepts.
 */
export class TestPki {
  private constructor(
    readonly dir: string,
    readonly ca: CertificateAuthority,
  ) {}

  static async create(dir: string, commonName = "cloak test CA"): Promise<TestPki> {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const ca = await createCertificateAuthority({ commonName, validity: validityDays(3650) });
    await writeFile(join(dir, "ca.crt"), ca.certPem);
    return new TestPki(dir, ca);
  }

  /** A PKI around an existing CA (e.g. the one `cloak keys init` made), writing under `dir`. */
  static async load(dir: string, caCertFile: string, caKeyFile: string): Promise<TestPki> {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const ca = await loadCertificateAuthority(await readFile(caCertFile, "utf8"), await readFile(caKeyFile, "utf8"));
    await writeFile(join(dir, "ca.crt"), ca.certPem);
    return new TestPki(dir, ca);
  }

  get caFile(): string {
    return join(this.dir, "ca.crt");
  }

  async server(name: string, options: { validity?: Validity; dnsNames?: string[] } = {}): Promise<TlsPaths> {
    const issued = await issueServerCertificate({
      ca: this.ca,
      dnsNames: options.dnsNames ?? ["localhost"],
      ipAddresses: ["127.0.0.1"],
      validity: options.validity ?? VALIDITY.good(),
    });
    return this.write(name, issued.certPem, issued.keyPem);
  }

  async client(name: string, identity: string, validity: Validity = VALIDITY.good()): Promise<TlsPaths> {
    const issued = await issueClientCertificate({ ca: this.ca, name: parseClientName(identity), validity });
    return this.write(name, issued.certPem, issued.keyPem);
  }

  private async write(name: string, certPem: string, keyPem: string): Promise<TlsPaths> {
    const dir = join(this.dir, name);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const paths = { certFile: join(dir, "tls.crt"), keyFile: join(dir, "tls.key"), caFile: join(dir, "ca.crt") };
    await writeFile(paths.keyFile, keyPem, { mode: 0o400 });
    await writeFile(paths.certFile, certPem);
    await writeFile(paths.caFile, this.ca.certPem);
    return paths;
  }
}
