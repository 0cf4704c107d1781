import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import http2 from "node:http2";
import https from "node:https";
import type { AddressInfo, Server as NetServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import tls from "node:tls";
import { pino } from "pino";
import { Registry } from "prom-client";
import { waitFor } from "../../test/support/wait.js";
import { createGrpcListener } from "../grpc/listener.js";
import { createPublicHttpServer } from "../observability/lifecycle.js";
import { certificateValidity, watchTlsFiles, type TlsReloader } from "./tls-reload.js";
import type { TlsFiles } from "./tls.js";

/** A self-signed pair for localhost made by openssl, valid `days` from now: its PEM and its serial. */
function makePair(dir: string, name: string, days: number): { cert: Buffer; key: Buffer; serial: string } {
  const certPath = join(dir, `${name}.crt`);
  const keyPath = join(dir, `${name}.key`);
  execFileSync("openssl", [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
    "-keyout", keyPath, "-out", certPath, "-days", String(days), "-subj", "/CN=localhost",
  ], { stdio: "ignore" });
  const cert = readFileSync(certPath);
  return { cert, key: readFileSync(keyPath), serial: certificateValidity(cert).serial };
}

/** As cert-manager and certbot's deploy hooks do: the new file written beside and renamed over the old one. */
function replace(path: string, content: Buffer): void {
  writeFileSync(`${path}.new`, content);
  renameSync(`${path}.new`, path);
}

/** A new TLS connection's view of the listener: the serial it is handed and the protocol agreed. */
function handshake(port: number, alpn: string): Promise<{ serial: string; alpn: string | false }> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: "127.0.0.1", port, servername: "localhost", rejectUnauthorized: false, ALPNProtocols: [alpn] }, () => {
      resolve({ serial: socket.getPeerCertificate().serialNumber, alpn: socket.alpnProtocol ?? false });
      socket.end();
    });
    socket.on("error", reject);
  });
}

function captureLogs() {
  const lines: Array<Record<string, unknown> & { level: number; msg: string }> = [];
  const logger = pino({ level: "debug" }, { write: (s: string) => void lines.push(JSON.parse(s)) });
  return { logger, lines };
}

describe("TLS certificates read again while serving (CHAT_TLS_CERT, CHAT_TLS_KEY)", () => {
  let dir: string;
  let files: TlsFiles;
  let a: ReturnType<typeof makePair>;
  let b: ReturnType<typeof makePair>;
  const closers: Array<() => unknown> = [];

  before(() => {
    dir = mkdtempSync(join(tmpdir(), "chat-tls-reload-"));
    a = makePair(dir, "a", 60);
    b = makePair(dir, "b", 90);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));
  beforeEach(() => {
    const certPath = join(dir, "cert.pem");
    const keyPath = join(dir, "key.pem");
    writeFileSync(certPath, a.cert);
    writeFileSync(keyPath, a.key);
    files = { certPath, keyPath, cert: a.cert, key: a.key, reloadMs: 30_000 };
  });
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close();
  });

  const listen = async <S extends NetServer>(server: S): Promise<number> => {
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    closers.push(() => new Promise((resolve) => server.close(resolve)));
    return (server.address() as AddressInfo).port;
  };
  const watch = (o: Partial<Parameters<typeof watchTlsFiles>[1]> = {}): TlsReloader => {
    const w = watchTlsFiles(files, { servers: [], logger: pino({ level: "silent" }), ...o });
    closers.push(() => w.close());
    return w;
  };

  it("serves a replaced pair to new connections on the gRPC and the HTTP listener, and keeps the connections already open", async () => {
    const creds = { cert: files.cert, key: files.key };
    const grpcServer = createGrpcListener((_req, res) => res.end("ok"), creds);
    const httpServer = createPublicHttpServer(creds, (_req, res) => res.end("ok"));
    const [grpcPort, httpPort] = [await listen(grpcServer), await listen(httpServer)];
    closers.push(() => (httpServer as http.Server).closeAllConnections());
    watch({ servers: [grpcServer, httpServer], intervalMs: 20 });
    assert.equal((await handshake(grpcPort, "h2")).serial, a.serial);
    assert.equal((await handshake(httpPort, "http/1.1")).serial, a.serial);

    // Connections open before the renewal, one on each listener.
    const session = http2.connect(`https://127.0.0.1:${grpcPort}`, { rejectUnauthorized: false });
    closers.push(() => session.close());
    const agent = new https.Agent({ keepAlive: true, maxSockets: 1, rejectUnauthorized: false });
    closers.push(() => agent.destroy());
    const get = () =>
      new Promise<{ serial: string; reused: boolean; body: string }>((resolve, reject) => {
        const req = https.get({ host: "127.0.0.1", port: httpPort, path: "/", agent }, (res) => {
          const serial = (res.socket as tls.TLSSocket).getPeerCertificate().serialNumber;
          let body = "";
          res.on("data", (d) => (body += String(d)));
          res.on("end", () => resolve({ serial, reused: req.reusedSocket, body }));
        });
        req.on("error", reject);
      });
    const onSession = () =>
      new Promise<string>((resolve, reject) => {
        const req = session.request({ ":path": "/", ":method": "GET" });
        let body = "";
        req.on("data", (d) => (body += String(d)));
        req.on("end", () => resolve(body));
        req.on("error", reject);
      });
    assert.equal(await onSession(), "ok");
    assert.deepEqual(await get(), { serial: a.serial, reused: false, body: "ok" });

    replace(files.keyPath, b.key);
    replace(files.certPath, b.cert);
    await waitFor(async () => (await handshake(grpcPort, "h2")).serial === b.serial, "the gRPC listener serving the new certificate");
    await waitFor(async () => (await handshake(httpPort, "http/1.1")).serial === b.serial, "the HTTP listener serving the new certificate");
    // Still HTTP/2 (ALPN h2) after the swap: a gRPC client speaks nothing else.
    assert.equal((await handshake(grpcPort, "h2")).alpn, "h2");

    // The connections opened before are still up and answered, on the certificate they began with.
    assert.equal(await onSession(), "ok");
    assert.equal((session.socket as tls.TLSSocket).getPeerCertificate().serialNumber, a.serial);
    assert.deepEqual(await get(), { serial: a.serial, reused: true, body: "ok" });
  });

  it("keeps the pair in service when the new one does not load, warning once naming the variables, and takes it once it does", async () => {
    const creds = { cert: files.cert, key: files.key };
    const server = createPublicHttpServer(creds, (_req, res) => res.end("ok"));
    const port = await listen(server);
    const { logger, lines } = captureLogs();
    const w = watch({ servers: [server], logger, intervalMs: 3_600_000 });

    // One file rewritten before the other: b's certificate with a's key.
    replace(files.certPath, b.cert);
    w.check();
    w.check();
    assert.equal((await handshake(port, "http/1.1")).serial, a.serial);
    assert.equal(w.validity.serial, a.serial);
    const warnings = lines.filter((l) => l.level === 40);
    assert.equal(warnings.length, 1, JSON.stringify(lines));
    assert.match(warnings[0]!.msg, /^CHAT_TLS_CERT \/ CHAT_TLS_KEY changed but are not a usable PEM certificate and matching key/);
    assert.equal(warnings[0]!.CHAT_TLS_CERT, files.certPath);

    // Half-written: cut short.
    replace(files.keyPath, b.key.subarray(0, 40));
    w.check();
    assert.equal((await handshake(port, "http/1.1")).serial, a.serial);
    assert.equal(lines.filter((l) => l.level === 40).length, 2);

    replace(files.keyPath, b.key);
    w.check();
    assert.equal((await handshake(port, "http/1.1")).serial, b.serial);
    assert.ok(lines.some((l) => l.msg.startsWith("TLS certificate reloaded") && l.serial === b.serial));
  });

  it("warns of a certificate ending within 14 days, errs on one expired or not yet valid, naming the file and the date, at start, reload and when that changes", () => {
    const { logger, lines } = captureLogs();
    const notAfter = certificateValidity(a.cert).notAfter.getTime();
    let now = notAfter - 20 * 86_400_000;
    const w = watch({ logger, now: () => now, intervalMs: 3_600_000 });
    assert.equal(lines.length, 0, "20 days left is no warning");

    now = notAfter - 13 * 86_400_000;
    w.check();
    w.check();
    assert.equal(lines.length, 1, "told once, not at every poll");
    assert.equal(lines[0]!.level, 40);
    assert.equal(lines[0]!.msg, `TLS certificate ${files.certPath} expires on ${new Date(notAfter).toISOString()}, within 14 days: renew CHAT_TLS_CERT`);
    assert.equal(lines[0]!.file, files.certPath);

    now = notAfter + 1000;
    w.check();
    assert.equal(lines.length, 2);
    assert.equal(lines[1]!.level, 50);
    assert.match(lines[1]!.msg, new RegExp(`^TLS certificate ${files.certPath} expired on ${new Date(notAfter).toISOString()}`));

    // At start.
    const early = captureLogs();
    watch({ logger: early.logger, now: () => certificateValidity(a.cert).notBefore.getTime() - 60_000 });
    assert.equal(early.lines.length, 1);
    assert.equal(early.lines[0]!.level, 50);
    assert.match(early.lines[0]!.msg, /is not valid until .*: clients refuse it until then/);

    // At a reload: b has 90 days from now, which `now` (a's end) leaves 30 of: nothing to say but the reload.
    replace(files.keyPath, b.key);
    replace(files.certPath, b.cert);
    w.check();
    assert.deepEqual(lines.slice(2).map((l) => l.level), [30]);
  });

  it("exports when the certificate in service expires, as chat_tls_certificate_expiry_timestamp_seconds", async () => {
    const registry = new Registry();
    const w = watch({ registry, intervalMs: 3_600_000 });
    const value = async () => (await registry.getSingleMetric("chat_tls_certificate_expiry_timestamp_seconds")!.get()).values[0]!.value;
    assert.equal(await value(), certificateValidity(a.cert).notAfter.getTime() / 1000);
    replace(files.keyPath, b.key);
    replace(files.certPath, b.cert);
    w.check();
    assert.equal(await value(), certificateValidity(b.cert).notAfter.getTime() / 1000);
    assert.ok((await value()) > Date.now() / 1000 + 80 * 86_400);
  });
});
