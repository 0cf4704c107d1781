import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { FcmProvider } from "./fcm.js";
import { aNotification, pushEndpoint } from "../../test/support/push-endpoint.js";
import { waitFor } from "../../test/support/wait.js";

const notification = aNotification;
const endpoint = (address: string) => pushEndpoint({ kind: "fcm", address });

describe("FCM access token under concurrent sends", () => {
  const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  let server: http.Server;
  let base = "";
  /** What the token endpoint does with the next request: answer with a lifetime (s), fail, or hold it. */
  let tokenAnswer: (res: http.ServerResponse) => void;
  let tokenRequests = 0;
  let holdSends = false;
  const held: http.ServerResponse[] = [];

  const issue = (expiresIn: number) => (res: http.ServerResponse) =>
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ access_token: `tok${tokenRequests}`, expires_in: expiresIn }));

  before(async () => {
    server = http.createServer((req, res) => {
      req.resume();
      req.on("end", () => {
        if (req.url === "/token") {
          tokenRequests++;
          return tokenAnswer(res);
        }
        if (holdSends) return void held.push(res);
        res.writeHead(200).end("{}");
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    for (const res of held) res.destroy();
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  });
  beforeEach(() => {
    tokenRequests = 0;
    holdSends = false;
    for (const res of held.splice(0)) res.destroy();
  });

  const provider = () =>
    new FcmProvider({
      account: {
        project_id: "p",
        client_email: "svc@example.iam",
        private_key: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
        token_uri: `${base}/token`,
      },
      url: base,
    });

  it("16 sends after the token expired fetch one new token between them", async () => {
    const p = provider();
    // A lifetime inside the refresh margin: expired for every later send.
    tokenAnswer = issue(1);
    assert.deepEqual(await p.send(endpoint("a"), notification, 2000), { ok: true });
    assert.equal(tokenRequests, 1);
    tokenAnswer = issue(3600);
    const outcomes = await Promise.all(Array.from({ length: 16 }, (_, i) => p.send(endpoint(`d${i}`), notification, 2000)));
    for (const o of outcomes) assert.deepEqual(o, { ok: true });
    assert.equal(tokenRequests - 1, 1, "token requests after expiry");
  });

  it("a failed token fetch is shared by the sends waiting on it and not kept: the next send fetches again", async () => {
    const p = provider();
    tokenAnswer = (res) => res.writeHead(500).end();
    const failed = await Promise.all(Array.from({ length: 4 }, (_, i) => p.send(endpoint(`d${i}`), notification, 2000)));
    // Our credentials or our network, not FCM's word on the device: no endpoint is to blame.
    for (const o of failed) assert.ok(!o.ok && o.retryable && !o.gone && o.ours, JSON.stringify(o));
    assert.equal(tokenRequests, 1);
    tokenAnswer = issue(3600);
    assert.deepEqual(await p.send(endpoint("x"), notification, 2000), { ok: true });
    assert.equal(tokenRequests, 2);
  });

  it("a send that must fetch a token still gives up after timeoutMs, not timeoutMs for each request", async () => {
    const p = provider();
    // The token comes late (a slow token endpoint) and FCM never answers.
    tokenAnswer = (res) => setTimeout(() => issue(3600)(res), 400);
    holdSends = true;
    const started = performance.now();
    const r = await p.send(endpoint("slow"), notification, 600);
    const elapsed = performance.now() - started;
    assert.ok(!r.ok && r.retryable, JSON.stringify(r));
    assert.ok(elapsed < 900, `gave up after ${Math.round(elapsed)} ms (timeoutMs 600)`);
  });

  it("a 401 answered to a send made with an older token leaves the token fetched since", async () => {
    const p = provider();
    tokenAnswer = issue(3600);
    holdSends = true;
    const stale = [p.send(endpoint("a"), notification, 5000), p.send(endpoint("b"), notification, 5000)];
    await waitFor(() => held.length === 2, "both sends held by the stand-in");
    held.shift()!.writeHead(401).end("{}");
    const refused = await stale[0]!;
    assert.ok(!refused.ok && refused.ours, "a 401 refuses our access token, not the device's");
    holdSends = false;
    assert.deepEqual(await p.send(endpoint("c"), notification, 2000), { ok: true });
    assert.equal(tokenRequests, 2, "the 401 made the next send fetch a new token");
    held.shift()!.writeHead(401).end("{}");
    assert.ok(!(await stale[1]!).ok);
    assert.deepEqual(await p.send(endpoint("d"), notification, 2000), { ok: true });
    assert.equal(tokenRequests, 2, "the late 401 for the old token dropped the new one");
  });
});

