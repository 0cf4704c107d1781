// `follow` of chat-cli in this process, against a stand-in gateway that restarts: when its followers come back.
import assert from "node:assert/strict";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Session } from "../../internal/cli/client.js";
import { follow } from "../../internal/cli/follow.js";
import { waitFor } from "../support/wait.js";
import { standInSession, startStandInGateway, type StandInGateway } from "./stand-in-gateway.js";

/** `follow` of channel 7 from its start on `gateway` until `signal`, printing nothing: its status lines go to `status`. */
const followOn = (gateway: StandInGateway, signal: AbortSignal, status: (line: string) => void, session: Session = standInSession()) =>
  follow(session, { channelId: 7n, afterSeq: 0n, signal, wsUrl: gateway.url, print: async () => {}, printChange: async () => {}, status });

describe("chat-cli follow after a gateway restart that drops every session at once", function () {
  this.timeout(30_000);
  let gateway: StandInGateway;
  let stop: AbortController;
  let following: Promise<void>[] = [];

  beforeEach(async () => {
    gateway = await startStandInGateway();
    stop = new AbortController();
    following = [];
  });
  afterEach(async () => {
    stop.abort();
    await Promise.all(following.map((f) => f.catch(() => undefined)));
    await gateway.close();
  });

  it("spreads the reconnects over the backoff (full jitter), not all at the same moment", async () => {
    const followers = 10;
    const waits: string[][] = [];
    for (let i = 0; i < followers; i++) {
      const said: string[] = [];
      waits.push(said);
      following.push(
        followOn(gateway, stop.signal, (line) => {
          const wait = /reconnecting in (\S+)s$/.exec(line)?.[1];
          if (wait !== undefined) said.push(wait);
        }),
      );
    }
    await waitFor(() => gateway.sockets.length === followers, "every follower connected");
    for (const socket of gateway.sockets) socket.close(1001, "gateway shutting down");
    await waitFor(() => waits.every((w) => w.length === 1), "every follower told its wait");
    const first = waits.map((w) => Number(w[0]));
    // The first wait is drawn from [0, 0.5 s): every follower waited exactly 0.5 s, and ten
    // thousand devices of a restarted gateway came back in one wave at each step of the backoff.
    assert.ok(first.every((s) => s >= 0 && s <= 0.5), `waits ${first.join(", ")}`);
    assert.ok(new Set(first).size > 1, `every follower waited ${first[0]} s`);
    await waitFor(() => gateway.sockets.length === 2 * followers, "every follower back");
  });

  it("says why a session refused for too many sessions (4029) was, and waits at least 10 s before trying again, not the backoff's first half-second", async () => {
    const said: string[] = [];
    following.push(followOn(gateway, stop.signal, (line) => said.push(line)));
    await waitFor(() => gateway.sockets.length === 1, "connected");
    gateway.sockets[0]!.close(4029, "too many sessions of this device (at most 8, CHAT_MAX_SESSIONS_PER_DEVICE)");
    const line = await waitFor(() => said.find((l) => l.includes("4029")), "a line about the refusal");
    assert.match(line, /refused the session: too many sessions of this device \(at most 8, CHAT_MAX_SESSIONS_PER_DEVICE\) \(close 4029\); trying again in \S+s$/);
    const wait = Number(/trying again in (\S+)s$/.exec(line)![1]);
    assert.ok(wait >= 10 && wait <= 10.5, `waits ${wait} s`);
    assert.equal(gateway.sockets.length, 1, "not connected again meanwhile");
  });
});

describe("chat-cli follow told by the api to come back later", function () {
  this.timeout(30_000);
  let gateway: StandInGateway;
  let stop: AbortController;
  let following: Promise<void> | undefined;

  beforeEach(async () => {
    gateway = await startStandInGateway();
    stop = new AbortController();
  });
  afterEach(async () => {
    stop.abort();
    await following?.catch(() => undefined);
    await gateway.close();
  });

  const busy = () => new ConnectError("too many requests", Code.ResourceExhausted, new Headers({ "chat-retry-after-ms": "7000", "chat-error-code": "ERROR_CODE_RATE_LIMITED" }));

  it("waits as long as a refused token refresh says before asking again", async () => {
    const said: string[] = [];
    let refreshes = 0;
    const session = {
      ...standInSession(),
      accessToken: async () => {
        refreshes++;
        throw busy();
      },
    } as unknown as Session;
    following = followOn(gateway, stop.signal, (l) => void said.push(l), session);
    await waitFor(() => said.length === 1, "the refusal told");
    // It asked again within half a second, into the limit that had just refused it, and again after a second, ...
    assert.match(said[0]!, /trying again in 7s$/);
    assert.equal(refreshes, 1);
  });

  it("waits as long as a refused history read says before reading again", async () => {
    const said: string[] = [];
    let reads = 0;
    const base = standInSession();
    const session = {
      ...base,
      api: {
        ...base.api,
        messages: {
          listMessages: async () => {
            reads++;
            throw busy();
          },
        },
      },
    } as unknown as Session;
    following = followOn(gateway, stop.signal, (l) => void said.push(l), session);
    await waitFor(() => said.some((l) => l.startsWith("could not")), "the refusal told");
    const refusals = said.filter((l) => l.startsWith("could not"));
    assert.equal(refusals.length, 1, refusals.join("\n"));
    assert.match(refusals[0]!, /^could not read the messages after #0 \(.*\); trying again in 7s$/);
    assert.equal(reads, 1);
  });
});
