import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fromBinary } from "@bufbuild/protobuf";
import WebSocket from "ws";
import { ServerFrameSchema, type ServerFrame, type Welcome } from "../../gen/es/chat/v1/session_pb.js";
import { waitFor } from "./wait.js";

/** A self-signed certificate for localhost and 127.0.0.1, made with openssl in `dir`: its files and the PEM to trust. */
export function selfSignedCertificate(dir: string): { certPath: string; keyPath: string; ca: Buffer } {
  const certPath = join(dir, "cert.pem");
  const keyPath = join(dir, "key.pem");
  execFileSync("openssl", [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
    "-keyout", keyPath, "-out", certPath, "-days", "2", "-subj", "/CN=localhost",
    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
  ], { stdio: "ignore" });
  return { certPath, keyPath, ca: readFileSync(certPath) };
}

/** Opens a wss:// session trusting `ca` and resolves with its Welcome (or rejects with the socket's error); the socket is closed after. */
export async function welcomeOverWss(url: string, accessToken: string, ca: Buffer, timeoutMs?: number): Promise<Welcome> {
  const ws = new WebSocket(url, ["chat.v1.proto", `bearer.${accessToken}`], { ca });
  const frames: ServerFrame[] = [];
  ws.on("message", (data) => frames.push(fromBinary(ServerFrameSchema, new Uint8Array(data as Buffer))));
  let failure: Error | undefined;
  ws.on("error", (err) => (failure = err));
  try {
    return await waitFor(() => {
      if (failure) throw failure;
      return frames[0]?.kind.case === "welcome" && frames[0].kind.value;
    }, "the welcome over wss", timeoutMs);
  } finally {
    ws.close();
  }
}
