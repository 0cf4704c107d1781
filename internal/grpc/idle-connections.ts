import type http2 from "node:http2";
import type { ServerHttp2Stream } from "node:http2";

/** How long an HTTP/2 connection of a gRPC listener may carry no stream before it is closed. */
export const IDLE_CONNECTION_MS = 60_000;

/**
 * Closes (GOAWAY) a connection of a gRPC listener (chatd, api, gateway) once
 * it has carried no stream for `idleMs`. Node's HTTP/2 server has no idle timeout of its own,
 * as its HTTP/1.1 one has: a client that connects and never opens a stream,
 * or a device gone from the network without a FIN once its stream's status
 * was out, held its socket and HTTP/2 session for good (nothing left to send,
 * nothing for TCP to give up on). A connection with a stream open is left
 * alone: a session whose device is gone ends by its silence (three
 * heartbeat intervals), and its connection then idles out.
 */
export function closeIdleConnections(server: http2.Http2Server | http2.Http2SecureServer, idleMs = IDLE_CONNECTION_MS): void {
  server.on("session", (session: http2.ServerHttp2Session) => {
    let streams = 0;
    let timer: NodeJS.Timeout | undefined;
    const idle = () => {
      timer = setTimeout(() => session.close(), idleMs);
      timer.unref();
    };
    session.on("stream", (stream: ServerHttp2Stream) => {
      streams++;
      clearTimeout(timer);
      stream.once("close", () => {
        if (--streams === 0 && !session.closed && !session.destroyed) idle();
      });
    });
    session.once("close", () => clearTimeout(timer));
    idle();
  });
}
