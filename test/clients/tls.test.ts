import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import WebSocket from "ws";
import { AuthService } from "../../gen/es/chat/v1/auth_pb.js";
import { AuthServiceClient, type SignUpResponse } from "../../gen/ts-proto/chat/v1/auth.js";
import { SessionServiceClient, type ConnectResponse } from "../../gen/ts-proto/chat/v1/session.js";
import { DevicePlatform } from "../../gen/ts-proto/chat/v1/types.js";
import { removeDataDir, startChatd, type ChatdProcess } from "../support/chatd.js";
import { selfSignedCertificate, welcomeOverWss } from "../support/tls.js";
import { waitFor } from "../support/wait.js";

/**
 * TLS on every listener when CHAT_TLS_CERT and CHAT_TLS_KEY are set: https
 * for Connect and gRPC-Web, wss:// for the WebSocket, gRPC over TLS
 * (HTTP/2 with ALPN h2). A self-signed certificate for 127.0.0.1 and
 * localhost, made with openssl, is the clients' only trusted root.
 */

const ROOT = resolve(import.meta.dirname, "../..");
const run = promisify(execFile);

describe("TLS on every listener (CHAT_TLS_CERT, CHAT_TLS_KEY)", function () {
  this.timeout(600_000);
  let dir: string;
  let certPath: string;
  let keyPath: string;
  let ca: Buffer;
  let chatd: ChatdProcess;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "chatd-tls-"));
    ({ certPath, keyPath, ca } = selfSignedCertificate(dir));
    chatd = await startChatd({ env: { CHAT_TLS_CERT: certPath, CHAT_TLS_KEY: keyPath } });
  });
  after(async () => {
    await chatd?.stop();
    if (chatd) removeDataDir(chatd.dataDir);
    rmSync(dir, { recursive: true, force: true });
  });

  const signUp = async () => {
    const username = `tls${process.pid.toString(36)}${Math.random().toString(36).slice(2, 7)}`;
    const transport = createConnectTransport({ baseUrl: chatd.httpUrl, httpVersion: "1.1", nodeOptions: { ca } });
    const res = await createClient(AuthService, transport).signUp({
      username,
      password: "correct horse battery",
      displayName: username,
      device: { name: "tls" },
    });
    return res;
  };

  it("announces https, wss and TLS gRPC addresses", () => {
    assert.match(chatd.httpUrl, /^https:\/\//);
    assert.match(chatd.wsUrl, /^wss:\/\/.*\/ws$/);
    assert.match(chatd.grpcUrl, /^https:\/\//);
  });

  it("serves Connect over https, and nothing over plaintext http on that port", async () => {
    const res = await signUp();
    assert.ok(res.credentials!.accessToken.length > 20);
    const plain = chatd.httpUrl.replace(/^https:/, "http:");
    const answer = await new Promise<string>((resolvePromise) => {
      const req = http.request(`${plain}/chat.v1.AuthService/Login`, { method: "POST" }, (r) => resolvePromise(`HTTP ${r.statusCode}`));
      req.on("error", (err) => resolvePromise(`error ${err.message}`));
      req.setTimeout(5000, () => req.destroy(new Error("timeout")));
      req.end("{}");
    });
    assert.ok(!/^HTTP 2\d\d/.test(answer), `plaintext HTTP must not be served: ${answer}`);
  });

  it("opens a wss:// WebSocket session and gets the welcome", async () => {
    const { credentials } = await signUp();
    const welcome = await welcomeOverWss(chatd.wsUrl, credentials!.accessToken, ca);
    assert.equal(welcome.userId, credentials!.userId);
    // A client that does not trust the certificate is refused.
    const untrusting = new WebSocket(chatd.wsUrl, ["chat.v1.proto", `bearer.${credentials!.accessToken}`]);
    const err = await new Promise<Error>((r) => untrusting.on("error", r));
    assert.match(err.message, /self[- ]signed|certificate/i);
  });

  it("serves gRPC over TLS (HTTP/2, ALPN h2) to grpc-js: a unary call and the bidi session", async () => {
    const address = new URL(chatd.grpcUrl).host;
    const creds = grpc.credentials.createSsl(ca);
    // SNI carries a host name, never an IP address: name the certificate's DNS name.
    const options = { "grpc.ssl_target_name_override": "localhost" };
    const auth = new AuthServiceClient(address, creds, options);
    const sessions = new SessionServiceClient(address, creds, options);
    try {
      const username = `tlsg${process.pid.toString(36)}${Math.random().toString(36).slice(2, 7)}`;
      const res = await new Promise<SignUpResponse>((resolvePromise, reject) =>
        auth.signUp(
          { username, password: "correct horse battery", displayName: username, device: { name: "tls", platform: DevicePlatform.DEVICE_PLATFORM_IOS } },
          (err, r) => (err ? reject(err) : resolvePromise(r)),
        ),
      );
      const md = new grpc.Metadata();
      md.set("authorization", `Bearer ${res.credentials!.accessToken}`);
      const stream = sessions.connect(md);
      const got: ConnectResponse[] = [];
      stream.on("data", (r: ConnectResponse) => got.push(r));
      stream.on("error", () => {});
      const first = await waitFor(() => got[0], "the welcome over TLS gRPC");
      assert.equal(first.frame?.kind?.$case, "welcome");
      stream.cancel();
    } finally {
      auth.close();
      sessions.close();
    }
    // Plaintext gRPC to the TLS port fails.
    const plain = new AuthServiceClient(address, grpc.credentials.createInsecure());
    try {
      await assert.rejects(
        new Promise((resolvePromise, reject) =>
          plain.login({ username: "x", password: "y", device: undefined }, new grpc.Metadata(), { deadline: Date.now() + 5000 }, (err, r) => (err ? reject(err) : resolvePromise(r))),
        ),
        (err: grpc.ServiceError) => err.code === grpc.status.UNAVAILABLE || err.code === grpc.status.DEADLINE_EXCEEDED,
      );
    } finally {
      plain.close();
    }
  });

  it("serves grpcurl over TLS with -cacert (reflection and health)", async () => {
    const built = await run("bash", [resolve(ROOT, "scripts/grpcurl.sh"), "path"], { cwd: ROOT, timeout: 540_000 });
    const address = new URL(chatd.grpcUrl).host;
    const { stdout } = await run(built.stdout.trim(), ["-cacert", certPath, "-max-time", "20", address, "grpc.health.v1.Health/Check"]);
    assert.deepEqual(JSON.parse(stdout), { status: "SERVING" });
  });

  it("refuses to start when a TLS file cannot be read, naming the variable", async () => {
    await assert.rejects(
      startChatd({ env: { CHAT_TLS_CERT: join(dir, "missing.pem"), CHAT_TLS_KEY: keyPath } }),
      /CHAT_TLS_CERT=.*missing\.pem.*cannot read/,
    );
    await assert.rejects(startChatd({ env: { CHAT_TLS_CERT: certPath } }), /CHAT_TLS_KEY is not set/);
    const bad = join(dir, "bad.pem");
    writeFileSync(bad, "not a key\n");
    await assert.rejects(startChatd({ env: { CHAT_TLS_CERT: certPath, CHAT_TLS_KEY: bad } }), /CHAT_TLS_KEY=.*not a usable PEM/);
  });
});
