/**
 * `node dist/test/apiserver/relay.js SOCKET HOST PORT`: accepts connections on a unix socket
 * and joins each to HOST:PORT. Started inside a network namespace, it lets a process outside
 * (the test) reach a server that listens only inside, without adding any interface or route
 * to this machine: a unix socket lives in the filesystem, which namespaces share.
 */
import { createConnection, createServer } from "node:net";
import { rmSync } from "node:fs";
import { splice } from "./splice.js";

const [socketPath = "", host = "", port = "0"] = process.argv.slice(2);
rmSync(socketPath, { force: true });
const server = createServer((client) => splice(client, createConnection({ host, port: Number(port) })));
server.listen(socketPath, () => process.stdout.write("ready\n"));
const stop = () => server.close(() => process.exit(0));
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
