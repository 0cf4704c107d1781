import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readApiConfig } from "../../cmd/api/config.js";
import { readChatServerConfig } from "../../cmd/chat-server/config.js";
import { readGatewayConfig } from "../../cmd/gateway/config.js";
import { readPipelineConfig } from "../../cmd/pipeline/config.js";
import { EnvReader } from "./env.js";
import { readTls, refuseTls } from "./tls.js";

describe("CHAT_TLS_CERT and CHAT_TLS_KEY", () => {
  let dir: string;
  let cert: string;
  let key: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), "chat-tls-config-"));
    cert = join(dir, "cert.pem");
    key = join(dir, "key.pem");
    execFileSync("openssl", [
      "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
      "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=localhost",
    ], { stdio: "ignore" });
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const problemsOf = (env: Record<string, string>) => {
    const r = new EnvReader(env);
    readTls(r);
    return r.problems;
  };

  it("reads both or neither, and names what is wrong with them", () => {
    assert.deepEqual(problemsOf({}), []);
    assert.deepEqual(problemsOf({ CHAT_TLS_CERT: cert, CHAT_TLS_KEY: key }), []);
    assert.match(problemsOf({ CHAT_TLS_CERT: cert })[0]!, /^CHAT_TLS_KEY is not set/);
    assert.match(problemsOf({ CHAT_TLS_CERT: cert, CHAT_TLS_KEY: join(dir, "none.pem") })[0]!, /^CHAT_TLS_KEY=".*none\.pem": cannot read the file \(ENOENT\)/);
    const notPem = join(dir, "not.pem");
    writeFileSync(notPem, "hello");
    assert.match(problemsOf({ CHAT_TLS_CERT: notPem, CHAT_TLS_KEY: key })[0]!, /not a usable PEM certificate and matching key/);
  });

  it("gives the api and the gateway TLS on their public listeners", () => {
    const env = { CHAT_TLS_CERT: cert, CHAT_TLS_KEY: key };
    assert.ok(readApiConfig(env).tls?.cert.length);
    assert.ok(readGatewayConfig(env).tls?.key.length);
    assert.equal(readApiConfig({}).tls, undefined);
  });

  it("is refused, naming the variable, by a process with no public listener rather than ignored", () => {
    const r = new EnvReader({ CHAT_TLS_KEY: key });
    refuseTls(r, "chat server");
    assert.equal(r.problems.length, 1);
    assert.match(r.problems[0]!, /^CHAT_TLS_KEY: the chat server has no public listener/);
    for (const read of [readChatServerConfig, readPipelineConfig]) {
      assert.throws(() => read({ CHAT_TLS_CERT: cert, CHAT_TLS_KEY: key }), /CHAT_TLS_CERT: .* has no public listener/);
    }
  });
});
