import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import https from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import tls from "node:tls";
import { certificateValidity } from "../../internal/config/tls-reload.js";
import { removeDataDir, startChatd, type ChatdProcess } from "../support/chatd.js";
import { waitFor } from "../support/wait.js";

/**
 * chatd with CHAT_TLS_CERT and CHAT_TLS_KEY rewritten under it, as certbot
 * and cert-manager renew them: new connections get the new certificate on
 * every listener, no restart, and /metrics tells when the one in service
 * expires. Before, the files were read once at start.
 */
describe("chatd: a renewed TLS certificate is served without a restart", function () {
  this.timeout(120_000);
  let dir: string;
  let chatd: ChatdProcess;
  const certPath = () => join(dir, "cert.pem");
  const keyPath = () => join(dir, "key.pem");

  const makePair = (name: string, days: number) => {
    const c = join(dir, `${name}.crt`);
    const k = join(dir, `${name}.key`);
    execFileSync("openssl", [
      "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
      "-keyout", k, "-out", c, "-days", String(days), "-subj", "/CN=localhost",
      "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
    ], { stdio: "ignore" });
    const cert = readFileSync(c);
    return { cert, key: readFileSync(k), ...certificateValidity(cert) };
  };
  const replace = (path: string, content: Buffer) => {
    writeFileSync(`${path}.new`, content);
    renameSync(`${path}.new`, path);
  };
  const serialAt = (url: string, alpn: string) =>
    new Promise<string>((resolve, reject) => {
      const { hostname, port } = new URL(url);
      const socket = tls.connect({ host: hostname, port: Number(port), servername: "localhost", rejectUnauthorized: false, ALPNProtocols: [alpn] }, () => {
        resolve(socket.getPeerCertificate().serialNumber);
        socket.end();
      });
      socket.on("error", reject);
    });
  const metrics = (ca: Buffer) =>
    new Promise<string>((resolve, reject) => {
      https.get(`${chatd.httpUrl}/metrics`, { ca }, (res) => {
        let body = "";
        res.on("data", (d) => (body += String(d)));
        res.on("end", () => resolve(body));
      }).on("error", reject);
    });
  const expiryIn = (text: string) => Number(/^chat_tls_certificate_expiry_timestamp_seconds (\S+)$/m.exec(text)?.[1]);

  before(() => {
    dir = mkdtempSync(join(tmpdir(), "chatd-tls-reload-"));
  });
  after(async () => {
    await chatd?.stop();
    if (chatd) removeDataDir(chatd.dataDir);
    rmSync(dir, { recursive: true, force: true });
  });

  it("serves the new certificate on the gRPC and the HTTP listener once the files are replaced, and keeps the old one for a pair that does not match", async () => {
    const a = makePair("a", 10);
    const b = makePair("b", 90);
    const c = makePair("c", 90);
    writeFileSync(certPath(), a.cert);
    writeFileSync(keyPath(), a.key);
    const lines: string[] = [];
    chatd = await startChatd({ env: { CHAT_TLS_CERT: certPath(), CHAT_TLS_KEY: keyPath(), CHAT_TLS_RELOAD_S: "1" } });
    createInterface({ input: chatd.child.stdout! }).on("line", (l) => lines.push(l));
    assert.equal(await serialAt(chatd.grpcUrl, "h2"), a.serial);
    assert.equal(await serialAt(chatd.httpUrl, "http/1.1"), a.serial);
    // Ten days left: exported for an alert.
    assert.equal(expiryIn(await metrics(a.cert)), a.notAfter.getTime() / 1000);

    replace(keyPath(), b.key);
    replace(certPath(), b.cert);
    await waitFor(async () => (await serialAt(chatd.grpcUrl, "h2")) === b.serial, "the gRPC listener serving the new certificate");
    await waitFor(async () => (await serialAt(chatd.httpUrl, "http/1.1")) === b.serial, "the HTTP/WebSocket listener serving the new certificate");
    assert.equal(expiryIn(await metrics(b.cert)), b.notAfter.getTime() / 1000);

    // c's certificate with b's key: refused, said, and b stays in service.
    replace(certPath(), c.cert);
    const warning = await waitFor(() => lines.map((l) => JSON.parse(l) as { msg: string; CHAT_TLS_CERT?: string }).find((l) => /CHAT_TLS_CERT \/ CHAT_TLS_KEY changed but are not a usable/.test(l.msg)), "the warning of a pair that does not match");
    assert.equal(warning.CHAT_TLS_CERT, certPath());
    assert.equal(await serialAt(chatd.grpcUrl, "h2"), b.serial);
    assert.equal(await serialAt(chatd.httpUrl, "http/1.1"), b.serial);
  });
});
