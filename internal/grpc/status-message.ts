import type { Http2ServerRequest, Http2ServerResponse, OutgoingHttpHeaders } from "node:http2";
import { cutToUtf8Bytes } from "../model/types.js";

/**
 * The most of a status message's text sent in `grpc-message`. An error may
 * quote the client's own input (a JSON decoder names an unknown key of
 * 100,000 characters): past the client's header list limit (8 KiB by default
 * in grpc-java, 64 KiB in Node's HTTP/2) the trailers were refused and the
 * stream reset with no status at all.
 */
export const MAX_GRPC_MESSAGE_BYTES = 1000;

/**
 * The `grpc-message` of a status, encoded as the gRPC spec asks
 * (PROTOCOL-HTTP2.md, "Percent-Encoded"): printable ASCII other than `%` as
 * it is, everything else as %XX of its UTF-8 bytes.
 *
 * connect-node writes it with `encodeURIComponent`, which also escapes
 * `: , / ; ? @ & = + $ #`. That is legal to send, but grpc-js (what Node
 * apps use) reads the field with `decodeURI`, which leaves exactly those
 * escapes in place, so a native client saw "close 1009%3A message size ..."
 * and "already taken%2C pick another". Escaping only what the spec says
 * reads the same in every decoder: grpc-go, grpc-java, `decodeURIComponent`
 * (Connect, grpcurl) and `decodeURI` alike. A text past MAX_GRPC_MESSAGE_BYTES
 * is cut, "..." marking the cut.
 */
export function specGrpcMessage(connectEncoded: string): string {
  let text: string;
  try {
    text = decodeURIComponent(connectEncoded);
  } catch {
    return connectEncoded; // not ours to mend
  }
  let out = "";
  for (const byte of Buffer.from(cutToUtf8Bytes(text, MAX_GRPC_MESSAGE_BYTES, "..."), "utf8")) {
    out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

function mend(headers: OutgoingHttpHeaders | undefined): void {
  const message = headers?.["grpc-message"];
  if (headers && typeof message === "string") headers["grpc-message"] = specGrpcMessage(message);
}

/**
 * Wraps a connect-node handler of an HTTP/2 listener so that every
 * `grpc-message` it writes, in a trailers-only response's headers or in the
 * trailers, is encoded as the spec asks (see specGrpcMessage).
 */
export function withSpecGrpcMessages(
  handler: (req: Http2ServerRequest, res: Http2ServerResponse) => void,
): (req: Http2ServerRequest, res: Http2ServerResponse) => void {
  return (req, res) => {
    const writeHead = res.writeHead.bind(res) as (status: number, headers?: OutgoingHttpHeaders) => Http2ServerResponse;
    const addTrailers = res.addTrailers.bind(res);
    // connect-node always passes the headers as an object (never a message).
    res.writeHead = ((status: number, headers?: OutgoingHttpHeaders) => {
      mend(headers);
      return writeHead(status, headers);
    }) as Http2ServerResponse["writeHead"];
    res.addTrailers = (trailers: OutgoingHttpHeaders) => {
      mend(trailers);
      addTrailers(trailers);
    };
    handler(req, res);
  };
}
