import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import http2 from "node:http2";
import net, { type AddressInfo } from "node:net";
import { pino } from "pino";
import { ApnsProvider } from "./apns.js";
import { aNotification, pushEndpoint } from "../../test/support/push-endpoint.js";
import { waitFor } from "../../test/support/wait.js";

const notification = aNotification;
const endpoint = (address: string) => pushEndpoint({ kind: "apns", address });


const key = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey;
const optionsFor = (server: http2.Http2Server) => ({
  key,
  keyId: "K",
  teamId: "T",
  topic: "com.example.chat",
  url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
});

/**
 * A stand-in APNs on loopback: a request whose device token `hold` picks waits
 * in `held` until the test answers it, the others are answered 200 at once;
 * `seen` hears of each request first.
 */
async function standInApns(
  held: Map<string, http2.ServerHttp2Stream>,
  hold: (device: string) => boolean,
  seen?: (device: string, headers: http2.IncomingHttpHeaders) => void,
): Promise<http2.Http2Server> {
  const server = http2.createServer();
  server.on("stream", (stream, headers) => {
    stream.on("error", () => {});
    stream.resume();
    const device = String(headers[":path"]).split("/").pop()!;
    seen?.(device, headers);
    if (hold(device)) return void held.set(device, stream);
    stream.respond({ ":status": 200 });
    stream.end();
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  return server;
}

/** Closes the provider, then the requests the stand-in still holds, then the stand-in. */
async function closeStandIn(provider: ApnsProvider, held: Map<string, http2.ServerHttp2Stream>, server: http2.Http2Server): Promise<void> {
  await provider.close();
  for (const s of held.values()) if (!s.destroyed) s.close(http2.constants.NGHTTP2_CANCEL);
  await new Promise<void>((r) => server.close(() => r()));
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
    server = await standInApns(held, (token) => holdPrefixes.some((p) => token.startsWith(p)));
    server.on("session", () => sessions++);
    provider = new ApnsProvider(optionsFor(server));
  });
  afterEach(() => closeStandIn(provider, held, server));

  const answer = (token: string) => {
    const s = held.get(token)!;
    s.respond({ ":status": 200 });
    s.end();
  };

  it("one stream timing out cancels that stream alone: another in flight on the connection is answered, and later sends keep the connection", async () => {
    const hung = provider.send(endpoint("00".repeat(32)), notification, 100);
    const other = provider.send(endpoint("11".repeat(32)), notification, 10_000);
    await waitFor(() => held.size === 2, "both requests held by the stand-in");
    const h = await hung;
    assert.ok(!h.ok && h.retryable && h.reason === "timed out", JSON.stringify(h));
    await waitFor(() => held.get("00".repeat(32))!.destroyed, "the stand-in to see the timed-out stream's RST_STREAM")
    answer("11".repeat(32));
    assert.deepEqual(await other, { ok: true });
    assert.deepEqual(await provider.send(endpoint("22".repeat(32)), notification, 2000), { ok: true });
    assert.equal(sessions, 1, "connections opened");
  });

  it("a stream reset by the service without a response keeps the connection", async () => {
    holdPrefixes = ["ee"];
    const reset = provider.send(endpoint("ee".repeat(32)), notification, 2000);
    await waitFor(() => held.size === 1, "the request held by the stand-in");
    held.get("ee".repeat(32))!.close(http2.constants.NGHTTP2_REFUSED_STREAM);
    const r = await reset;
    assert.ok(!r.ok && r.retryable && !r.gone, JSON.stringify(r));
    assert.deepEqual(await provider.send(endpoint("22".repeat(32)), notification, 2000), { ok: true });
    assert.equal(sessions, 1, "connections opened");
  });

  it("a timeout on a connection that answers PINGs (APNs slow, not the connection dead) keeps it, however many in a row", async () => {
    const logs: { level: number; msg: string }[] = [];
    await provider.close();
    provider = new ApnsProvider({ ...optionsFor(server), logger: pino({ level: "debug" }, { write: (l: string) => void logs.push(JSON.parse(l)) }) });
    holdPrefixes = ["0"];
    for (const t of ["01", "02", "03", "04"]) {
      const before = logs.length;
      assert.ok(!(await provider.send(endpoint(t.repeat(32)), notification, 50)).ok);
      await waitFor(() => logs.length > before, "the PING after that timeout to settle")
    }
    assert.ok(logs.every((l) => l.level === 20), JSON.stringify(logs)); // PINGs answered, none warned of
    assert.deepEqual(await provider.send(endpoint("22".repeat(32)), notification, 2000), { ok: true });
    assert.equal(sessions, 1, "connections opened");
  });

  it("a connection still not set up (TLS handshake unanswered) when a stream times out is dropped, not pinged", async () => {
    const silent = net.createServer();
    const accepted: net.Socket[] = [];
    let dropped = 0;
    silent.on("connection", (s) => accepted.push(s.on("error", () => {}).on("close", () => dropped++).resume()));
    await new Promise<void>((r) => silent.listen(0, "127.0.0.1", () => r()));
    const p = new ApnsProvider({ ...optionsFor(server), url: `https://127.0.0.1:${(silent.address() as AddressInfo).port}` });
    try {
      const h = await p.send(endpoint("22".repeat(32)), notification, 100);
      assert.ok(!h.ok && h.retryable, JSON.stringify(h));
      await waitFor(() => dropped === 1, "the provider to give the connection up (the next send dials again)")
    } finally {
      await p.close();
      accepted.forEach((s) => s.destroy());
      await new Promise<void>((r) => silent.close(() => r()));
    }
  });

  describe("behind a link that can go silent (a NAT that dropped the flow)", () => {
    let proxy: net.Server;
    /** Set: every connection open through the proxy drops all bytes both ways from then on, like a dropped NAT mapping. */
    let silenceOpen: () => void;
    const links = new Set<{ client: net.Socket; upstream: net.Socket; silent: boolean }>();
    let closedLinks = 0;

    beforeEach(async () => {
      closedLinks = 0;
      links.clear();
      const backendPort = (server.address() as AddressInfo).port;
      proxy = net.createServer((client) => {
        const upstream = net.connect(backendPort, "127.0.0.1");
        const link = { client, upstream, silent: false };
        links.add(link);
        client.on("data", (d) => void (link.silent || upstream.write(d)));
        upstream.on("data", (d) => void (link.silent || client.write(d)));
        const end = () => {
          if (!links.delete(link)) return;
          closedLinks++;
          client.destroy();
          upstream.destroy();
        };
        for (const s of [client, upstream]) s.on("error", end).on("close", end);
      });
      await new Promise<void>((r) => proxy.listen(0, "127.0.0.1", () => r()));
      silenceOpen = () => links.forEach((l) => (l.silent = true));
      await provider.close();
      provider = new ApnsProvider({ ...optionsFor(server), url: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`, idlePingAfterMs: 60_000 });
    });
    afterEach(async () => {
      await provider.close();
      for (const l of links) {
        l.client.destroy();
        l.upstream.destroy();
      }
      await new Promise<void>((r) => proxy.close(() => r()));
    });

    it("one stream timeout, then no PING ack within the deadline: the connection is closed at once, its other streams fail at once, and the next send opens a new one", async () => {
      assert.deepEqual(await provider.send(endpoint("22".repeat(32)), notification, 2000), { ok: true });
      silenceOpen();
      const other = provider.send(endpoint("11".repeat(32)), notification, 600_000);
      const t0 = Date.now();
      const h = await provider.send(endpoint("00".repeat(32)), notification, 200);
      assert.ok(!h.ok && h.retryable && h.reason === "timed out", JSON.stringify(h));
      await waitFor(() => closedLinks === 1, "the provider to drop the dead connection (not one timeout per push in flight)")
      const o = await other; // without the PING it would wait its 10 minutes
      assert.ok(!o.ok && o.retryable, JSON.stringify(o));
      assert.ok(Date.now() - t0 < 200 + 2000 + 1000, `closed ${Date.now() - t0} ms after the send`);
      assert.deepEqual(await provider.send(endpoint("33".repeat(32)), notification, 2000), { ok: true });
      assert.equal(sessions, 2, "connections opened");
    });

    /** A provider pinging connections idle past 1 ms, with one connection that answered a push and is idle past that. */
    async function connectionIdlePastThreshold(): Promise<void> {
      await provider.close();
      provider = new ApnsProvider({ ...optionsFor(server), url: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`, idlePingAfterMs: 1 });
      assert.deepEqual(await provider.send(endpoint("22".repeat(32)), notification, 2000), { ok: true });
      const answeredAt = Date.now();
      await waitFor(() => Date.now() - answeredAt > 1, "the connection idle past the threshold");
    }

    it("a connection idle past idlePingAfterMs is pinged before reuse: dead, the push goes on a new connection instead of being lost", async () => {
      await connectionIdlePastThreshold();
      silenceOpen();
      const t0 = Date.now();
      assert.deepEqual(await provider.send(endpoint("33".repeat(32)), notification, 1000), { ok: true });
      assert.ok(Date.now() - t0 < 1000 + 500, `the send took ${Date.now() - t0} ms, its timeout 1000`);
      assert.equal(sessions, 2, "connections opened");
      assert.equal(closedLinks, 1, "the dead one closed");
    });

    it("a connection idle past idlePingAfterMs is pinged before reuse with the wall clock stepped back an hour meanwhile (NTP): idle time is monotonic", async () => {
      await connectionIdlePastThreshold();
      const realNow = Date.now;
      Date.now = () => realNow() - 3_600_000;
      try {
        silenceOpen();
        assert.deepEqual(await provider.send(endpoint("33".repeat(32)), notification, 1000), { ok: true });
        assert.equal(sessions, 2, "connections opened");
        assert.equal(closedLinks, 1, "the dead one closed");
      } finally {
        Date.now = realNow;
      }
    });

    it("a connection idle past idlePingAfterMs that answers the PING is reused", async () => {
      await connectionIdlePastThreshold();
      assert.deepEqual(await provider.send(endpoint("33".repeat(32)), notification, 2000), { ok: true });
      assert.equal(sessions, 1, "connections opened");
    });
  });
});

describe("APNs provider token", () => {
  let server: http2.Http2Server;
  let provider: ApnsProvider;
  /** Requests the stand-in holds, by device token, until the test answers them. */
  const held = new Map<string, http2.ServerHttp2Stream>();
  /** The provider token each request carried, by device token. */
  const tokens = new Map<string, string>();

  beforeEach(async () => {
    held.clear();
    tokens.clear();
    server = await standInApns(held, (device) => device.startsWith("ee"), (device, headers) => tokens.set(device, String(headers.authorization)));
    provider = new ApnsProvider(optionsFor(server));
  });
  afterEach(() => closeStandIn(provider, held, server));

  const expired = (device: string) => {
    const s = held.get(device)!;
    s.respond({ ":status": 403, "content-type": "application/json" });
    s.end(JSON.stringify({ reason: "ExpiredProviderToken" }));
  };

  it("renews a token APNs calls expired once, not again for a late answer about the token it already replaced", async () => {
    const [a, b] = ["ee01".repeat(16), "ee02".repeat(16)];
    const first = provider.send(endpoint(a), notification, 5000);
    const second = provider.send(endpoint(b), notification, 5000);
    await waitFor(() => held.size === 2, "both requests held by the stand-in");
    assert.equal(tokens.get(a), tokens.get(b), "one token for both");
    expired(a);
    const refused = await first;
    assert.ok(!refused.ok && refused.ours, "ExpiredProviderToken refuses our token, not the device's");
    assert.deepEqual(await provider.send(endpoint("11".repeat(32)), notification, 5000), { ok: true });
    const renewed = tokens.get("11".repeat(32));
    assert.notEqual(renewed, tokens.get(a), "a new token after ExpiredProviderToken");
    // The other request with the old token answers late (APNs answers streams in any order).
    expired(b);
    const late = await second;
    assert.ok(!late.ok && late.retryable, JSON.stringify(late));
    assert.deepEqual(await provider.send(endpoint("22".repeat(32)), notification, 5000), { ok: true });
    // Apple refuses tokens renewed more than once in 20 minutes (TooManyProviderTokenUpdates).
    assert.equal(tokens.get("22".repeat(32)), renewed, "the renewed token kept");
  });

  it("a provider token it cannot sign (a key that cannot sign ES256) is a failure of ours, not a throw nor the device's", async () => {
    const p = new ApnsProvider({ ...optionsFor(server), key: generateKeyPairSync("ed25519").privateKey });
    try {
      const o = await p.send(endpoint("11".repeat(32)), notification, 5000);
      assert.ok(!o.ok && o.ours && !o.gone, JSON.stringify(o));
    } finally {
      await p.close();
    }
  });

  it("keeps its token when the wall clock steps forward an hour (NTP): its age is monotonic, and a renewal within 20 minutes Apple refuses", async () => {
    assert.deepEqual(await provider.send(endpoint("11".repeat(32)), notification, 5000), { ok: true });
    const realNow = Date.now;
    Date.now = () => realNow() + 3_600_000;
    try {
      assert.deepEqual(await provider.send(endpoint("22".repeat(32)), notification, 5000), { ok: true });
    } finally {
      Date.now = realNow;
    }
    assert.equal(tokens.get("22".repeat(32)), tokens.get("11".repeat(32)), "the token renewed 50 minutes early by the wall clock");
  });
});

describe("APNs 410 timestamp", () => {
  it("tells since when APNs holds the token dead (its 410's timestamp), and nothing when it gives none", async () => {
    let body = "";
    const server = http2.createServer();
    server.on("stream", (stream) => {
      stream.on("error", () => {});
      stream.resume();
      stream.respond({ ":status": 410, "content-type": "application/json" });
      stream.end(body);
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    const provider = new ApnsProvider(optionsFor(server));
    try {
      body = JSON.stringify({ reason: "Unregistered", timestamp: 1_767_225_600_000 });
      const o = await provider.send(endpoint("33".repeat(32)), notification, 5000);
      assert.ok(!o.ok && o.gone && o.goneSinceMs === 1_767_225_600_000, JSON.stringify(o));
      body = JSON.stringify({ reason: "Unregistered" });
      const without = await provider.send(endpoint("33".repeat(32)), notification, 5000);
      assert.ok(!without.ok && without.gone && without.goneSinceMs === undefined, JSON.stringify(without));
    } finally {
      await closeStandIn(provider, new Map(), server);
    }
  });
});
