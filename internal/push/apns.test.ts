import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { ApnsProvider } from "./apns.js";
import { aNotification, pushEndpoint } from "../../test/support/push-endpoint.js";

const notification = aNotification;
const endpoint = (address: string) => pushEndpoint({ kind: "apns", address });

/** Resolves once cond() holds, checked on each turn of the event loop. */
async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setImmediate(r));
}

describe("APNs connection when streams time out", () => {
  let server: http2.Http2Server;
  let provider: ApnsProvider;
  let sessions = 0;
  /** Requests the stand-in holds, by device token, until the test answers them. */
  const held = new Map<string, http2.ServerHttp2Stream>();
  /** Device tokens starting with these are held; all others are answered 200 at once. */
  let holdPrefixes = ["00", "11"];

  beforeEach(async () => {
    sessions = 0;
    held.clear();
    holdPrefixes = ["00", "11"];
    server = http2.createServer();
    server.on("session", () => sessions++);
    server.on("stream", (stream, headers) => {
      stream.on("error", () => {});
      stream.resume();
      const token = String(headers[":path"]).split("/").pop()!;
      if (holdPrefixes.some((p) => token.startsWith(p))) return void held.set(token, stream);
      stream.respond({ ":status": 200 });
      stream.end();
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    provider = new ApnsProvider({
      key: generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey,
      keyId: "K",
      teamId: "T",
      topic: "com.example.chat",
      url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    });
  });
  afterEach(async () => {
    await provider.close();
    for (const s of held.values()) if (!s.destroyed) s.close(http2.constants.NGHTTP2_CANCEL);
    await new Promise<void>((r) => server.close(() => r()));
  });

  const answer = (token: string) => {
    const s = held.get(token)!;
    s.respond({ ":status": 200 });
    s.end();
  };

  it("one stream timing out cancels that stream alone: another in flight on the connection is answered, and later sends keep the connection", async () => {
    const hung = provider.send(endpoint("00".repeat(32)), notification, 100);
    const other = provider.send(endpoint("11".repeat(32)), notification, 10_000);
    await until(() => held.size === 2);
    const h = await hung;
    assert.ok(!h.ok && h.retryable && h.reason === "timed out", JSON.stringify(h));
    await until(() => held.get("00".repeat(32))!.destroyed); // the stand-in saw the RST_STREAM
    answer("11".repeat(32));
    assert.deepEqual(await other, { ok: true });
    assert.deepEqual(await provider.send(endpoint("22".repeat(32)), notification, 2000), { ok: true });
    assert.equal(sessions, 1, "connections opened");
  });

  it("a stream reset by the service without a response keeps the connection", async () => {
    holdPrefixes = ["ee"];
    const reset = provider.send(endpoint("ee".repeat(32)), notification, 2000);
    await until(() => held.size === 1);
    held.get("ee".repeat(32))!.close(http2.constants.NGHTTP2_REFUSED_STREAM);
    const r = await reset;
    assert.ok(!r.ok && r.retryable && !r.gone, JSON.stringify(r));
    assert.deepEqual(await provider.send(endpoint("22".repeat(32)), notification, 2000), { ok: true });
    assert.equal(sessions, 1, "connections opened");
  });

  it("three timeouts in a row with no answer between (a connection that died silently) close it: the next send opens a new one", async () => {
    holdPrefixes = ["0"];
    const send = (t: string) => provider.send(endpoint(t.repeat(32)), notification, 50);
    for (const t of ["01", "02"]) assert.ok(!(await send(t)).ok);
    // An answer between says the connection is alive: the count starts again.
    assert.deepEqual(await provider.send(endpoint("22".repeat(32)), notification, 2000), { ok: true });
    for (const t of ["03", "04"]) assert.ok(!(await send(t)).ok);
    assert.deepEqual(await provider.send(endpoint("33".repeat(32)), notification, 2000), { ok: true });
    assert.equal(sessions, 1, "two timeouts in a row keep the connection");
    for (const t of ["05", "06", "07"]) assert.ok(!(await send(t)).ok);
    assert.deepEqual(await provider.send(endpoint("44".repeat(32)), notification, 2000), { ok: true });
    assert.equal(sessions, 2, "the third in a row closed it");
  });
});
