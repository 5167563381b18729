import { TLSSocket } from "node:tls";
import type { ServerUnaryCall } from "@grpc/grpc-js";
import { parseSubjectAltName, type ClientIdentity } from "./identity.js";

/** Who is on the other end of a call: the identity of a verified client certificate, or null. */
export interface Peer {
  readonly identity: ClientIdentity;
  /** The certificate's subject, for audit lines about certificates without usable names. */
  readonly subject: string;
  /** The remote address, `host:port`, as the audit line shows it. */
  readonly address: string;
}

/**
 * The verified client identity of a call, computed once per connection.
 *
 * grpc-js's public way, `call.getAuthContext()`, calls Node's `getPeerCertificate()` on every
 * request, which builds the whole certificate as an object (fingerprints included): about 70 µs
 * here, more than the rest of a GetDataKey. A client certificate cannot change during a
 * connection (Node's HTTP/2 sessions disable TLS renegotiation), so the identity is cached per
 * HTTP/2 session, which grpc-js 1.14 keeps at `call.call.stream.session`. Should a grpc-js
 * upgrade move it, this falls back to getAuthContext() (correct, slower), and the unit test that
 * asserts the fast path fails so that the upgrade is noticed.
 */
export function peerOf(call: ServerUnaryCall<unknown, unknown>): Peer | null {
  const session = sessionOf(call);
  if (!session) return peerFromAuthContext(call);
  const cached = cache.get(session);
  if (cached !== undefined) return cached;
  const socket = session.socket;
  let peer: Peer | null = null;
  if (socket instanceof TLSSocket && socket.authorized) {
    const certificate = socket.getPeerX509Certificate();
    if (certificate) peer = { identity: parseSubjectAltName(certificate.subjectAltName), subject: certificate.subject.replace(/\n/g, ","), address: call.getPeer() };
  }
  cache.set(session, peer);
  return peer;
}

/** Whether peerOf() can use its per-connection cache for this call (for the test that guards it). */
export function peerCacheApplies(call: ServerUnaryCall<unknown, unknown>): boolean {
  return sessionOf(call) !== undefined;
}

const cache = new WeakMap<object, Peer | null>();

interface SessionLike {
  readonly socket: unknown;
}

function sessionOf(call: ServerUnaryCall<unknown, unknown>): SessionLike | undefined {
  const session = (call as unknown as { call?: { stream?: { session?: unknown } } }).call?.stream?.session;
  if (typeof session !== "object" || session === null || !("socket" in session)) return undefined;
  return session as SessionLike;
}

function peerFromAuthContext(call: ServerUnaryCall<unknown, unknown>): Peer | null {
  const certificate = call.getAuthContext().sslPeerCertificate;
  if (!certificate) return null;
  const subject = Object.entries(certificate.subject ?? {})
    .map(([k, v]) => `${k}=${Array.isArray(v) ? v.join("+") : String(v)}`)
    .join(",");
  return { identity: parseSubjectAltName(certificate.subjectaltname), subject, address: call.getPeer() };
}
