import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { Registry } from "prom-client";
import { conditionCheck, measuringLoop, serveOps, type Probes, type ProcessState } from "./http.js";
import { MAX_LOOP_DELAY_MS, type LoopDelay } from "./event-loop.js";

describe("serveOps: /readyz, /healthz and /livez", () => {
  let server: http.Server;
  let base: string;
  let probes: Probes;
  // What each test sets: the checks' verdict, the loop's delay, the process's state.
  let redisUp: boolean;
  let delayMs: number;
  let state: { stopping: boolean; failure?: Error };

  before(async () => {
    const loop: LoopDelay = { delayMs: () => delayMs };
    const processState: ProcessState = {
      get stopping() {
        return state.stopping;
      },
      get failure() {
        return state.failure;
      },
    };
    probes = { checks: [conditionCheck("redis", () => redisUp, "connection refused")], state: processState, loop };
    server = http.createServer((req, res) => {
      if (!serveOps(new Registry(), probes, req, res)) res.writeHead(404).end();
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((r) => server.close(() => r())));
  beforeEach(() => {
    redisUp = true;
    delayMs = 3;
    state = { stopping: false };
  });

  async function probe(path: string): Promise<{ status: number; body: { status: string; checks?: Record<string, string>; reason?: string; eventLoopDelayMs?: number } }> {
    const res = await fetch(`${base}${path}`);
    return { status: res.status, body: (await res.json()) as never };
  }

  it("answers 200 on all three while every check passes and the loop turns", async () => {
    for (const path of ["/readyz", "/healthz", "/livez"]) assert.equal((await probe(path)).status, 200, path);
    assert.deepEqual((await probe("/readyz")).body, { status: "ok", checks: { redis: "ok" } });
    assert.deepEqual((await probe("/livez")).body, { status: "ok", eventLoopDelayMs: 3 });
  });

  it("fails /readyz (and /healthz, its alias) naming the failing check, while /livez passes: an engine away is no reason to restart", async () => {
    redisUp = false;
    for (const path of ["/readyz", "/healthz"]) {
      const ready = await probe(path);
      assert.equal(ready.status, 503, path);
      assert.deepEqual(ready.body, { status: "unavailable", checks: { redis: "connection refused" } });
    }
    const live = await probe("/livez");
    assert.equal(live.status, 200, JSON.stringify(live.body));
  });

  it("fails /livez when the event loop runs past the bound behind, naming the delay, and passes again once it catches up", async () => {
    delayMs = MAX_LOOP_DELAY_MS + 1_500;
    const live = await probe("/livez");
    assert.equal(live.status, 503);
    assert.equal(live.body.reason, `event loop ${MAX_LOOP_DELAY_MS + 1_500} ms behind (more than ${MAX_LOOP_DELAY_MS} ms)`);
    assert.equal((await probe("/readyz")).status, 200, "readiness is what the checks say");
    delayMs = MAX_LOOP_DELAY_MS;
    assert.equal((await probe("/livez")).status, 200, "the bound itself is still alive");
  });

  it("fails /readyz but not /livez while the process drains: a supervisor would cut the drain short", async () => {
    state.stopping = true;
    const ready = await probe("/readyz");
    assert.equal(ready.status, 503);
    assert.match(ready.body.checks!.stopping!, /stopping/);
    assert.equal(ready.body.checks!.redis, "ok");
    assert.equal((await probe("/livez")).status, 200);
  });

  it("fails /livez once the process gave up and is stopping to be restarted", async () => {
    state = { stopping: true, failure: new Error("cannot start the sequencer stage") };
    const live = await probe("/livez");
    assert.equal(live.status, 503);
    assert.equal(live.body.reason, "cannot go on: cannot start the sequencer stage");
  });

  it("answers the probes of a public listener (its metrics on the ops port) naming what fails but not why: the reasons name engines' addresses", async () => {
    const pub = http.createServer((req, res) => {
      if (!serveOps(new Registry(), probes, req, res, { metrics: false })) res.writeHead(404).end();
    });
    await new Promise<void>((r) => pub.listen(0, "127.0.0.1", r));
    try {
      const at = (path: string) => fetch(`http://127.0.0.1:${(pub.address() as AddressInfo).port}${path}`);
      redisUp = false;
      state = { stopping: true, failure: new Error("cannot reach 10.0.0.7:9042") };
      const ready = await at("/readyz");
      assert.equal(ready.status, 503);
      assert.deepEqual(await ready.json(), { status: "unavailable", checks: { stopping: "unavailable", redis: "unavailable" } });
      const live = await at("/livez");
      assert.equal(live.status, 503);
      assert.deepEqual(await live.json(), { status: "unavailable", reason: "unavailable (the reason is on the ops port)", eventLoopDelayMs: 3 });
      assert.equal((await probe("/livez")).body.reason, "cannot go on: cannot reach 10.0.0.7:9042", "the ops listener tells why");
      redisUp = true;
      state = { stopping: false };
      assert.deepEqual(await (await at("/readyz")).json(), { status: "ok", checks: { redis: "ok" } });
    } finally {
      await new Promise<void>((r) => pub.close(() => r()));
    }
  });

  it("leaves other paths, and /metrics when told, to the caller", async () => {
    assert.equal((await fetch(`${base}/live`)).status, 404);
    const req = { url: "/metrics" } as http.IncomingMessage;
    assert.equal(serveOps(new Registry(), probes, req, {} as http.ServerResponse, { metrics: false }), false);
  });
});

describe("measuringLoop", () => {
  it("starts the process's measure when a listener starts, not at the first /livez", () => {
    const probes = measuringLoop({ checks: [] });
    assert.ok(probes.loop, "a listener's probes read the process's loop");
    assert.equal(measuringLoop({ checks: [] }).loop, probes.loop, "one measure for every listener of the process");
    const own: LoopDelay = { delayMs: () => 0 };
    assert.equal(measuringLoop({ checks: [], loop: own }).loop, own);
  });
});
