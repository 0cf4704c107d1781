import assert from "node:assert/strict";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { AuthService } from "../../gen/es/chat/v1/auth_pb.js";
import { AuthServiceClient } from "../../gen/ts-proto/chat/v1/auth.js";
import { SessionServiceClient, type ConnectResponse } from "../../gen/ts-proto/chat/v1/session.js";
import { execFileSync } from "node:child_process";
import { readFileSync, renameSync } from "node:fs";
import http from "node:http";
import { join } from "node:path";
import { connect as tlsConnect } from "node:tls";
import { certificateValidity } from "../../internal/config/tls-reload.js";
import { startRole, useDeployment } from "../support/processes.js";
import { selfSignedCertificate, welcomeOverWss } from "../support/tls.js";
import { waitFor } from "../support/wait.js";

/**
 * The public listeners of the separate processes, the api's and the
 * gateways', take CHAT_TLS_CERT and CHAT_TLS_KEY as chatd's do: https for
 * Connect, wss:// for the WebSocket, gRPC over TLS. Before, both were read by
 * no separate process and their listeners stayed plaintext.
 */
describe("cluster: TLS on the api's and the gateway's listeners", function () {
  this.timeout(240_000);
  const { dir, env } = useDeployment("clustertls");
  let certPath: string;
  let keyPath: string;
  let ca: Buffer;
  let api: Record<string, unknown>;
  let gateway: Record<string, unknown>;

  before(async () => {
    ({ certPath, keyPath, ca } = selfSignedCertificate(dir));
    const common = { ...env, CHAT_OPS_PORT: "0" };
    const tls = { CHAT_TLS_CERT: certPath, CHAT_TLS_KEY: keyPath, CHAT_TLS_RELOAD_S: "1" };
    api = (await startRole("api", { ...common, ...tls })).info;
    await startRole("chat-server", common);
    gateway = (await startRole("gateway", { ...common, ...tls })).info;
  });

  it("announces https, wss and TLS gRPC addresses", () => {
    assert.match(String(api.http), /^https:\/\//);
    assert.match(String(api.grpc), /^https:\/\//);
    assert.match(String(gateway.ws), /^wss:\/\/.*\/ws$/);
    assert.match(String(gateway.grpc), /^https:\/\//);
  });

  it("signs up over https, opens a wss:// session on the gateway and a TLS gRPC session beside it", async () => {
    const username = `ctls${process.pid.toString(36)}${Math.random().toString(36).slice(2, 7)}`;
    const transport = createConnectTransport({ baseUrl: String(api.http), httpVersion: "1.1", nodeOptions: { ca } });
    const { credentials } = await createClient(AuthService, transport).signUp({
      username,
      password: "correct horse battery",
      displayName: username,
      device: { name: "tls" },
    });
    const token = credentials!.accessToken;

    const welcome = await welcomeOverWss(String(gateway.ws), token, ca, 60_000);
    assert.equal(welcome.userId, credentials!.userId);

    const creds = grpc.credentials.createSsl(ca);
    // SNI carries a host name, never an IP address: name the certificate's DNS name.
    const options = { "grpc.ssl_target_name_override": "localhost" };
    const sessions = new SessionServiceClient(new URL(String(gateway.grpc)).host, creds, options);
    const auth = new AuthServiceClient(new URL(String(api.grpc)).host, creds, options);
    try {
      const md = new grpc.Metadata();
      md.set("authorization", `Bearer ${token}`);
      const stream = sessions.connect(md);
      const got: ConnectResponse[] = [];
      stream.on("data", (r: ConnectResponse) => got.push(r));
      stream.on("error", () => {});
      const first = await waitFor(() => got[0], "the welcome over TLS gRPC", 60_000);
      assert.equal(first.frame?.kind?.$case, "welcome");
      stream.cancel();
      // The api's gRPC listener too; its refusal's message reads as sent (no %3A for a colon).
      const refused = await new Promise<grpc.ServiceError>((resolve, reject) =>
        auth.login({ username, password: "wrong password", device: { name: "x", platform: 0 } }, (err) => (err ? resolve(err) : reject(new Error("a wrong password was taken")))),
      );
      assert.equal(refused.code, grpc.status.UNAUTHENTICATED);
      assert.doesNotMatch(refused.details, /%[0-9A-F]{2}/, refused.details);
    } finally {
      sessions.close();
      auth.close();
    }
  });

  // Last: the certificate the tests above trust is replaced.
  it("serves a renewed certificate on the api's and the gateway's listeners without a restart, and exports its expiry", async () => {
    const [newCert, newKey] = [join(dir, "renewed.crt"), join(dir, "renewed.key")];
    execFileSync("openssl", [
      "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
      "-keyout", newKey, "-out", newCert, "-days", "30", "-subj", "/CN=localhost",
    ], { stdio: "ignore" });
    const renewed = certificateValidity(readFileSync(newCert));
    renameSync(newKey, keyPath);
    renameSync(newCert, certPath);
    const serialAt = (url: string, alpn: string) =>
      new Promise<string>((resolve, reject) => {
        const { hostname, port } = new URL(url.replace(/^wss:/, "https:"));
        const socket = tlsConnect({ host: hostname, port: Number(port), servername: "localhost", rejectUnauthorized: false, ALPNProtocols: [alpn] }, () => {
          resolve(socket.getPeerCertificate().serialNumber);
          socket.end();
        });
        socket.on("error", reject);
      });
    for (const [what, url, alpn] of [["api http", api.http, "http/1.1"], ["api gRPC", api.grpc, "h2"], ["gateway wss", gateway.ws, "http/1.1"], ["gateway gRPC", gateway.grpc, "h2"]] as const) {
      await waitFor(async () => (await serialAt(String(url), alpn)) === renewed.serial, `the ${what} listener serving the renewed certificate`);
    }
    for (const info of [api, gateway]) {
      const text = await new Promise<string>((resolve, reject) => {
        http.get(`http://127.0.0.1:${Number(info.ops)}/metrics`, (res) => {
          let body = "";
          res.on("data", (d) => (body += String(d)));
          res.on("end", () => resolve(body));
        }).on("error", reject);
      });
      assert.equal(Number(/^chat_tls_certificate_expiry_timestamp_seconds (\S+)$/m.exec(text)?.[1]), renewed.notAfter.getTime() / 1000);
    }
  });
});
