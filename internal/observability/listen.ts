import { isIPv6, type Server } from "node:net";
import { ServerCredentials, type Server as GrpcServer } from "@grpc/grpc-js";

/** A listener that could not start, told in terms of the setting that picks its port. */
export class ListenError extends Error {
  constructor(
    readonly host: string,
    readonly port: number,
    readonly setting: string,
    cause: NodeJS.ErrnoException,
  ) {
    // A host that names no address is CHAT_HOST's fault, not the port's: the message names the one to fix.
    const about = cause.code === "ENOTFOUND" || cause.code === "EAI_AGAIN" ? "CHAT_HOST" : setting;
    super(`cannot listen on ${host}:${port} (${about}): ${reason(cause, setting)}`, { cause });
  }
}

function reason(err: NodeJS.ErrnoException, setting: string): string {
  switch (err.code) {
    case "EADDRINUSE":
      return `the port is in use; stop what listens there (another copy of this process?) or set ${setting} to another port`;
    case "EACCES":
      return `permission denied; ports below 1024 need privileges: set ${setting} to a higher port`;
    case "EADDRNOTAVAIL":
      return "no such address on this machine; check CHAT_HOST";
    case "ENOTFOUND":
    case "EAI_AGAIN":
      return "the host name does not resolve; set CHAT_HOST to an address of this machine (127.0.0.1, 0.0.0.0) or a name that resolves to one";
    default:
      return err.message;
  }
}

/** Starts listening; a failure rejects with a ListenError rather than crashing the process on an 'error' event. */
export function listen(server: Server | import("node:http2").Http2Server, host: string, port: number, setting: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const failed = (err: NodeJS.ErrnoException) => reject(new ListenError(host, port, setting, err));
    server.once("error", failed);
    server.listen(port, host, () => {
      server.off("error", failed);
      resolve();
    });
  });
}

/**
 * grpc-js's bindAsync, failing as `listen` does. grpc-js folds the socket's
 * error into the text of a plain Error ("No address added ... [listen
 * EADDRINUSE: ...]", "Name resolution failed ..."), which left uncaught is a
 * stack trace that names no setting; the code is read back out of that text.
 */
export function bindGrpc(server: GrpcServer, host: string, port: number, setting: string): Promise<number> {
  const target = isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
  return new Promise((resolve, reject) => {
    server.bindAsync(target, ServerCredentials.createInsecure(), (err, bound) => {
      if (!err) return resolve(bound);
      const code = /\b(EADDRINUSE|EADDRNOTAVAIL|EACCES|ENOTFOUND|EAI_AGAIN)\b/.exec(err.message)?.[1] ?? (/name resolution failed/i.test(err.message) ? "ENOTFOUND" : undefined);
      reject(new ListenError(host, port, setting, Object.assign(new Error(err.message), { code })));
    });
  });
}
