import { strict as assert } from "node:assert";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer, request, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isWebClientRequest, serveWebClient } from "../../web/serve.js";

// What chatd serves at "/": the built web client, as web/serve.ts does it in
// cmd/chatd/app.ts, on a port picked at run time over a folder made here. No
// path, however spelt, reaches a file outside web/dist or a dot file in it;
// the page comes with the headers that keep it from being framed, sniffed or
// cached stale, and hashed assets are cached for good.
describe("web: chatd's serving of the built client (web/serve.ts)", () => {
  let dir: string;
  let server: Server;
  let port: number;

  async function serveFrom(root: string): Promise<void> {
    server?.close();
    server = createServer((req, res) => {
      if (isWebClientRequest(req)) return void serveWebClient(req, res, root);
      res.writeHead(418).end("api");
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    port = (server.address() as AddressInfo).port;
  }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "serve-test-"));
    await mkdir(join(dir, "dist", "assets"), { recursive: true });
    await writeFile(join(dir, "dist", "index.html"), "<!doctype html><title>Chat</title>");
    await writeFile(join(dir, "dist", "assets", "index-abc123.js"), "console.log(1)");
    await writeFile(join(dir, "dist", "sw.js"), "// worker");
    await writeFile(join(dir, "dist", ".env"), "SECRET=dot");
    await writeFile(join(dir, "secret.txt"), "SECRET=outside");
    await serveFrom(join(dir, "dist"));
  });
  after(async () => {
    server.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** A request with the path exactly as given: no client normalises it on the way. */
  function get(path: string, method = "GET"): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
    return new Promise((resolve, reject) => {
      const req = request({ host: "127.0.0.1", port, path, method, headers: { host: `127.0.0.1:${port}` } }, (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (body += c));
        res.on("end", () => resolve({ status: res.statusCode!, headers: res.headers, body }));
      });
      req.on("error", reject);
      req.end();
    });
  }

  it("serves index.html with its security headers, revalidated every time", async () => {
    for (const path of ["/", "/index.html", "/?x=1"]) {
      const res = await get(path);
      assert.equal(res.status, 200, path);
      assert.equal(res.body, "<!doctype html><title>Chat</title>");
      assert.match(String(res.headers["content-type"]), /^text\/html/);
      assert.equal(res.headers["x-content-type-options"], "nosniff");
      assert.equal(res.headers["cache-control"], "no-cache");
      const csp = String(res.headers["content-security-policy"]);
      for (const d of ["default-src 'self'", "script-src 'self'", "frame-ancestors 'none'", "base-uri 'none'", "form-action 'none'"]) assert.ok(csp.includes(d), `${path}: ${d} in ${csp}`);
      assert.ok(!csp.includes("unsafe-inline") && !csp.includes("unsafe-eval"), csp);
      assert.equal(res.headers["referrer-policy"], "no-referrer");
    }
  });

  it("caches hashed assets for good, and the service worker not at all", async () => {
    const js = await get("/assets/index-abc123.js");
    assert.equal(js.status, 200);
    assert.equal(js.headers["cache-control"], "public, max-age=31536000, immutable");
    assert.match(String(js.headers["content-type"]), /^text\/javascript/);
    assert.equal(js.headers["x-content-type-options"], "nosniff");
    const sw = await get("/sw.js");
    assert.equal(sw.status, 200);
    assert.equal(sw.headers["cache-control"], "no-cache", "a worker cached for good would never be updated");
    const head = await get("/assets/index-abc123.js", "HEAD");
    assert.equal(head.status, 200);
    assert.equal(head.body, "");
    assert.equal(head.headers["content-length"], String("console.log(1)".length));
  });

  it("reaches no file outside web/dist nor a dot file, however the path is spelt", async () => {
    const paths = [
      "/../secret.txt",
      "/..",
      "/assets/../../secret.txt",
      "/%2e%2e/secret.txt",
      "/%2E%2E%2Fsecret.txt",
      "/assets/%2e%2e/%2e%2e/secret.txt",
      "/assets/..%2f..%2fsecret.txt",
      "/assets/..%5c..%5csecret.txt",
      "/assets/%252e%252e/%252e%252e/secret.txt",
      "/.env",
      "/%2eenv",
      "/assets/%2e%2e/.env",
      "/%00",
      "/index.html%00.js",
      "/assets/index-abc123.js%00",
      "/assets/",
      "/assets",
      "//etc/passwd",
    ];
    for (const path of paths) {
      const res = await get(path);
      assert.ok(!res.body.includes("SECRET"), `${path}: ${res.status} ${res.body}`);
      assert.ok(res.status === 404 || res.status === 400 || res.status === 418, `${path}: ${res.status}`);
      if (res.status !== 418) assert.equal(res.headers["x-content-type-options"], "nosniff", path);
    }
    assert.equal((await get("/assets/%E0%A4%A")).status, 400, "a malformed escape");
  });

  it("leaves the API's paths to the API", async () => {
    assert.equal((await get("/chat.v1.AuthService/Login", "POST")).status, 418);
    assert.equal((await get("/chat.v1.AuthService/Login")).status, 418);
  });

  it("says how to build the client when none is built, with the page's own security headers", async () => {
    await serveFrom(join(dir, "missing"));
    try {
      const res = await get("/");
      assert.equal(res.status, 503);
      assert.match(res.body, /npm run build:web/);
      assert.equal(res.headers["cache-control"], "no-store");
      assert.equal(res.headers["x-content-type-options"], "nosniff");
      const csp = String(res.headers["content-security-policy"]);
      assert.ok(csp.includes("frame-ancestors 'none'") && csp.includes("default-src 'none'"), csp);
      assert.equal((await get("/sw.js")).status, 404);
    } finally {
      await serveFrom(join(dir, "dist"));
    }
  });
});
