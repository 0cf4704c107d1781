import http2 from "node:http2";
import { closeIdleConnections } from "./idle-connections.js";

/**
 * Streams one connection may have open at once on a public gRPC listener
 * (api, gateway, chatd): HTTP/2's SETTINGS_MAX_CONCURRENT_STREAMS, which RFC
 * 9113 asks be no fewer than 100, as on the chat servers' listener
 * (CHAT_SERVER_MAX_CONCURRENT_STREAMS). Node's default is no limit: one TCP
 * connection could open any number of realtime sessions or calls, past
 * every bound a connection count puts on a client. A native app carries its
 * session and a few calls; a client at the limit waits for a stream to end
 * before it opens the next (grpc-js and Node's, Go's and Swift's HTTP/2
 * clients queue), and a stream opened past it regardless is refused
 * (REFUSED_STREAM: never processed, safe to retry).
 */
export const PUBLIC_MAX_CONCURRENT_STREAMS = 100;

/**
 * A public gRPC listener: h2c, or HTTP/2 over TLS (ALPN h2) when `tls` is
 * given, its streams per connection bounded and its idle connections closed.
 */
export function createGrpcListener(
  handler: (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void,
  tls?: { cert: string | Buffer; key: string | Buffer },
): http2.Http2Server | http2.Http2SecureServer {
  const settings = { maxConcurrentStreams: PUBLIC_MAX_CONCURRENT_STREAMS };
  const server = tls ? http2.createSecureServer({ ...tls, settings }, handler) : http2.createServer({ settings }, handler);
  closeIdleConnections(server);
  return server;
}
