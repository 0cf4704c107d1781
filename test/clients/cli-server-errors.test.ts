import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer as createHttpServer, type Server } from "node:http";
import { createServer as createH2cServer } from "node:http2";
import { createServer as createHttpsServer } from "node:https";
import { createServer as createNetServer, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";

/**
 * What chat-cli says when its --server is no chatd it can talk to: the
 * newcomer's mistakes (chatd not started, its gRPC port given for its HTTP
 * one, https:// to a plaintext server, chatd's own certificate not trusted
 * here) named with the address and what to do, not in Node's words.
 */

const ROOT = resolve(import.meta.dirname, "../..");
const CLI = join(ROOT, "cmd/chat-cli/main.ts");

function signUp(server: string, env: Record<string, string> = {}): Promise<{ code: number | null; stderr: string }> {
  const home = mkdtempSync(join(tmpdir(), "chat-cli-errors-"));
  const child = spawn(process.execPath, ["--import", "tsx", CLI, "signup", "newcomer", "--server", server], {
    cwd: ROOT,
    env: { ...process.env, CHAT_CLI_HOME: home, CHAT_PASSWORD: "correct horse battery", NODE_EXTRA_CA_CERTS: "", ...env },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr!.on("data", (d) => (stderr += d));
  return new Promise((done) =>
    child.on("close", (code) => {
      rmSync(home, { recursive: true, force: true });
      done({ code, stderr });
    }),
  );
}

async function listening<T extends { listen(port: number, host: string): unknown; address(): unknown }>(server: T): Promise<number> {
  server.listen(0, "127.0.0.1");
  await once(server as unknown as Server, "listening");
  return (server.address() as AddressInfo).port;
}

describe("chat-cli when the server is not one it can talk to", function () {
  this.timeout(60_000);
  const closers: Array<() => void> = [];
  let dir: string;
  let certPath: string;
  let keyPath: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "chat-cli-errors-tls-"));
    certPath = join(dir, "cert.pem");
    keyPath = join(dir, "key.pem");
    await promisify(execFile)("openssl", [
      "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
      "-keyout", keyPath, "-out", certPath, "-days", "2", "-subj", "/CN=localhost",
      "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
    ]);
  });

  after(() => {
    for (const close of closers) close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("names the address when nothing listens there, and asks whether chatd runs", async () => {
    // A port just free: nothing listens on it once this server has closed.
    const probe = createNetServer();
    const port = await listening(probe);
    probe.close();
    await once(probe, "close");
    const r = await signUp(`http://127.0.0.1:${port}`);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, `chat-cli: cannot reach the server at http://127.0.0.1:${port} (ECONNREFUSED): is chatd running there? (npm start)\n`);
  });

  it("says a gRPC port (HTTP/2 only) is not the HTTP API, instead of \"write EPIPE\"", async () => {
    const h2c = createH2cServer();
    closers.push(() => h2c.close());
    const port = await listening(h2c);
    const r = await signUp(`http://127.0.0.1:${port}`);
    assert.equal(r.code, 1);
    // The h2c server's bytes (HPE_) or, when it hangs up before they arrive,
    // the hang-up: which one a run sees is a race, and both name the gRPC port.
    assert.match(r.stderr, new RegExp(`^chat-cli: the server at http://127\\.0\\.0\\.1:${port} (does not answer as chatd's HTTP API does \\(HPE_\\w+\\): is that its gRPC port\\?|hung up without answering \\((EPIPE|ECONNRESET)\\): .*if that is its gRPC port,) chat-cli takes the HTTP one \\(8080 by default\\)\\n$`));
  });

  it("says http:// to a TLS server may want https://, instead of \"read ECONNRESET\"", async () => {
    const tls = createHttpsServer({ cert: readFileSync(certPath), key: readFileSync(keyPath) }, (_, res) => res.writeHead(404).end());
    closers.push(() => tls.close());
    const port = await listening(tls);
    const r = await signUp(`http://127.0.0.1:${port}`);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`^chat-cli: the server at http://127\\.0\\.0\\.1:${port} hung up without answering \\((ECONNRESET|EPIPE)\\): if it serves TLS \\(chatd started with CHAT_TLS_CERT\\), use https://; `));
  });

  it("says https:// to a plaintext server is the mistake, not an OpenSSL record error", async () => {
    const plain = createHttpServer((_, res) => res.writeHead(404).end());
    closers.push(() => plain.close());
    const port = await listening(plain);
    const r = await signUp(`https://127.0.0.1:${port}`);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, `chat-cli: the server at https://127.0.0.1:${port} does not speak TLS: use http://, not https://\n`);
  });

  it("says how to trust a self-signed certificate, and NODE_EXTRA_CA_CERTS gets past it", async () => {
    const tls = createHttpsServer({ cert: readFileSync(certPath), key: readFileSync(keyPath) }, (_, res) => res.writeHead(404).end());
    closers.push(() => tls.close());
    const port = await listening(tls);
    const r = await signUp(`https://127.0.0.1:${port}`);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`^chat-cli: the TLS certificate of the server at https://127\\.0\\.0\\.1:${port} is not trusted here \\(self[- ]signed certificate\\); trust it with NODE_EXTRA_CA_CERTS=/path/to/cert\\.pem\\n$`));
    const trusted = await signUp(`https://127.0.0.1:${port}`, { NODE_EXTRA_CA_CERTS: certPath });
    assert.equal(trusted.code, 1);
    assert.doesNotMatch(trusted.stderr, /certificate|TLS/, "past TLS, to the server's own answer");
  });
});
