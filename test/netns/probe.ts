/**
 * Traffic for the netns tests, run inside a namespace as `node dist/test/netns/probe.js MODE`:
 *
 *   udp-echo PORT                      echo every datagram back (IPv4 and IPv6)
 *   tcp-echo PORT                      echo every byte back
 *   send HOST PORT MESSAGE [SIZE] [MS] one datagram (MESSAGE padded to SIZE bytes), repeated every
 *                                      250 ms; exit 0 when it comes back within MS (default 3000)
 *   udp-probe HOST PORT INTERVAL_MS    a datagram every interval until SIGTERM; prints one JSON
 *                                      line: sent, received, lost, maxGapMs (the longest time
 *                                      without a reply, i.e. the connectivity gap)
 *   tcp-stream HOST PORT INTERVAL_MS   one TCP connection, a line every interval until SIGTERM;
 *                                      prints JSON: sent, echoed, closed (did it drop?), maxGapMs
 *
 *   agent                              read JSON lines {id, host, port, message, size, waitMs} on
 *                                      stdin, do a "send" for each, print "<id> ok" or "<id> fail":
 *                                      one Node start per pod instead of one per datagram (Node
 *                                      starts slowly on the VM tier's emulated CPU)
 *   http-get URL                       print the body; exit 1 unless the status is 2xx
 *
 * Each long-running mode prints "ready" once it is listening or has its first reply.
 */
import { createSocket } from "node:dgram";
import { createConnection, createServer } from "node:net";
import { isIP } from "node:net";
import { createInterface } from "node:readline";

const [mode, ...args] = process.argv.slice(2);

/** On SIGTERM: stop sending (`quiet`), wait for the replies still in flight, then report. */
function onStop(report: () => object, quiet: () => void): void {
  const stop = () => {
    quiet();
    setTimeout(() => {
      process.stdout.write(`${JSON.stringify(report())}\n`);
      process.exit(0);
    }, 300);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

function udpType(host: string) {
  return isIP(host) === 6 ? "udp6" : "udp4";
}

/** Sends `body` every 250 ms until it comes back (true) or `waitMs` passes (false). */
function sendOnce(host: string, port: number, body: Buffer, waitMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = createSocket(udpType(host));
    const finish = (ok: boolean) => {
      clearTimeout(timer);
      clearInterval(again);
      sock.close();
      resolve(ok);
    };
    const timer = setTimeout(() => finish(false), waitMs);
    sock.on("message", (msg) => {
      if (msg.equals(body)) finish(true);
    });
    sock.on("error", () => undefined);
    // Resent: the first datagram may wait for a WireGuard handshake.
    const send = () => sock.send(body, port, host, () => undefined);
    const again = setInterval(send, 250);
    send();
  });
}

function padded(message: string, size: number): Buffer {
  const body = Buffer.alloc(Math.max(size, Buffer.byteLength(message)), ".");
  body.write(message);
  return body;
}

switch (mode) {
  case "udp-echo": {
    const sock = createSocket({ type: "udp6", ipv6Only: false });
    sock.on("message", (msg, rinfo) => sock.send(msg, rinfo.port, rinfo.address));
    sock.bind(Number(args[0]), "::", () => process.stdout.write("ready\n"));
    break;
  }
  case "tcp-echo": {
    const server = createServer((c) => {
      c.on("error", () => c.destroy());
      c.pipe(c);
    });
    server.listen({ port: Number(args[0]), host: "::", ipv6Only: false }, () => process.stdout.write("ready\n"));
    break;
  }
  case "send": {
    const [host = "", port = "0", message = "", size = "0", waitMs = "3000"] = args;
    process.exit((await sendOnce(host, Number(port), padded(message, Number(size)), Number(waitMs))) ? 0 : 1);
    break;
  }
  case "agent": {
    const lines = createInterface({ input: process.stdin });
    lines.on("line", (line) => {
      const r = JSON.parse(line) as { id: number; host: string; port: number; message: string; size: number; waitMs: number };
      void sendOnce(r.host, r.port, padded(r.message, r.size), r.waitMs).then((ok) => process.stdout.write(`${r.id} ${ok ? "ok" : "fail"}\n`));
    });
    lines.on("close", () => process.exit(0));
    process.stdout.write("ready\n");
    break;
  }
  case "udp-probe": {
    const [host = "", port = "0", interval = "10"] = args;
    const sock = createSocket(udpType(host));
    let sent = 0;
    let received = 0;
    let lastReply = performance.now();
    let maxGapMs = 0;
    let started = false;
    sock.on("message", () => {
      const now = performance.now();
      if (started) maxGapMs = Math.max(maxGapMs, now - lastReply);
      else process.stdout.write("ready\n");
      started = true;
      lastReply = now;
      received++;
    });
    sock.on("error", () => undefined);
    const sender = setInterval(() => {
      const seq = Buffer.alloc(8);
      seq.writeDoubleBE(sent++);
      sock.send(seq, Number(port), host, () => undefined);
    }, Number(interval));
    let stoppedAt = 0;
    onStop(
      () => ({ sent, received, lost: sent - received, maxGapMs: Math.round(Math.max(maxGapMs, started && lastReply < stoppedAt - 100 ? stoppedAt - lastReply : 0)) }),
      () => {
        clearInterval(sender);
        stoppedAt = performance.now();
      },
    );
    break;
  }
  case "tcp-stream": {
    const [host = "", port = "0", interval = "20"] = args;
    let sent = 0;
    let echoed = 0;
    let closed = false;
    let error: string | undefined;
    let lastEcho = performance.now();
    let maxGapMs = 0;
    const c = createConnection({ host, port: Number(port) }, () => process.stdout.write("ready\n"));
    let buffered = "";
    c.on("data", (d) => {
      buffered += d.toString();
      const lines = buffered.split("\n");
      buffered = lines.pop() ?? "";
      const now = performance.now();
      if (lines.length > 0) {
        maxGapMs = Math.max(maxGapMs, now - lastEcho);
        lastEcho = now;
        echoed += lines.length;
      }
    });
    c.on("close", () => (closed = true));
    c.on("error", (err) => (error = err.message));
    const sender = setInterval(() => {
      if (!closed) c.write(`${sent++}\n`);
    }, Number(interval));
    onStop(
      () => ({ sent, echoed, closed, error, maxGapMs: Math.round(maxGapMs) }),
      () => clearInterval(sender),
    );
    break;
  }
  case "http-get": {
    const res = await fetch(args[0] ?? "", { signal: AbortSignal.timeout(5_000) });
    process.stdout.write(await res.text());
    process.exit(res.ok ? 0 : 1);
    break;
  }
  default:
    process.stderr.write(`probe: unknown mode ${JSON.stringify(mode)}\n`);
    process.exit(2);
}
