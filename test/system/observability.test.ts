import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { PushService } from "../../gen/es/chat/v1/push_pb.js";
import { addDevice, apiClients, rpcError, signUp } from "../support/api.js";
import { TestDevice } from "../support/device.js";
import { engineConfig } from "../support/engines.js";
import { metricIn, namingProblems } from "../support/metrics.js";
import { startRole, useDeployment, type RoleProcess } from "../support/processes.js";
import { PushReceiver, type TestSubscription } from "../support/push-receiver.js";
import { TcpProxy } from "../support/tcp-proxy.js";
import { waitFor } from "../support/wait.js";

const ROLES = ["api", "chat-server", "pipeline", "gateway", "presence", "notifier"] as const;
/** The default (two 25 s heartbeat intervals and 10 s), written out: the presence process's sweeps wait on it. */
const PRESENCE_GRACE_MS = 60_000;
/**
 * The presence process's alone (it has no sessions, so nothing there heartbeats on it): its
 * sweeps wait two intervals from its first answer from Redis (holdOffMs in internal/presence/tracker.ts),
 * 50 s at the default, which was most of this suite's time.
 */
const PRESENCE_HEARTBEAT_MS = 2_000;
/** The pipeline's CHAT_PIPELINE_STALL_MS in the Cassandra cut: long enough that the first failed batch surely finds /healthz still 200. */
const STALL_MS = 5_000;

function authed(baseUrl: string, token: string) {
  const auth: Interceptor = (next) => (req) => {
    req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };
  return createConnectTransport({ baseUrl, httpVersion: "1.1", interceptors: [auth] });
}

/**
 * Every role of the distributed mode as an operator meets it: each process
 * started on the real engines, scraped on its ops port, and its whole log
 * (stdout and stderr) read for what must never be there.
 */
describe("distributed mode: metrics, health and logs of every role", function () {
  this.timeout(300_000);
  const deployment = useDeployment("obs");
  const env = {
    ...deployment.env,
    CHAT_KAFKA_PARTITIONS: "2",
    CHAT_OPS_PORT: "0",
    CHAT_PUSH_ALLOW_HTTP: "true",
    CHAT_PUSH_COLLAPSE_MS: "100",
    CHAT_PUSH_BACKOFF_MS: "100",
    CHAT_VAPID_SUBJECT: "mailto:ops@chat.test",
    // Debug too: a line that only shows when an operator turns the level up must not leak either.
    CHAT_LOG_LEVEL: "debug",
    CHAT_PRESENCE_GRACE_MS: String(PRESENCE_GRACE_MS),
  };
  const roles = new Map<string, RoleProcess>();
  const logs = new Map<string, string[]>();
  let receiver: PushReceiver;
  const opsUrl = (role: string) => `http://127.0.0.1:${String(roles.get(role)!.info.ops)}`;
  const scrape = async (role: string) => (await fetch(`${opsUrl(role)}/metrics`)).text();

  before(async () => {
    receiver = await new PushReceiver().start();
    // The api first: it writes the keys the others read.
    for (const role of ROLES) {
      const lines: string[] = [];
      logs.set(role, lines);
      const own: Record<string, string> = role === "presence" ? { CHAT_HEARTBEAT_INTERVAL_MS: String(PRESENCE_HEARTBEAT_MS) } : {};
      const p = await startRole(role, { ...env, ...own, CHAT_LOG_LEVEL: "debug" }, 90_000, { onLine: (l) => lines.push(l) });
      p.child.stderr!.on("data", (d) => lines.push(String(d)));
      roles.set(role, p);
    }
  });
  after(async () => {
    await Promise.all([...roles.values()].map((p) => p.stop()));
    await receiver?.stop();
  });

  it("serves /healthz 200 and Node.js's process metrics on every role, its names by Prometheus's conventions", async () => {
    for (const role of ROLES) {
      const health = await fetch(`${opsUrl(role)}/healthz`);
      assert.equal(health.status, 200, `${role}: ${await health.text()}`);
      const text = await scrape(role);
      for (const name of ["nodejs_heap_size_used_bytes", "nodejs_eventloop_lag_seconds", "process_resident_memory_bytes", "process_open_fds"]) {
        assert.ok(metricIn(text, name) !== undefined, `${role}: ${name}`);
      }
      assert.deepEqual(namingProblems(text), [], role);
    }
  });

  it("moves each role's own metrics as messages go through, and logs no text, token, password or push secret of theirs", async () => {
    const before = Object.fromEntries(await Promise.all(ROLES.map(async (r) => [r, await scrape(r)] as const)));
    const secrets = await exercise(String(roles.get("api")!.info.http), String(roles.get("gateway")!.info.ws), receiver, async () => {
      // A sweep counts once its announcements' first tries ended, and the chat server sweeps too: on a
      // loaded machine none of the presence process's may have finished within the traffic (failed once in CI).
      // And one failed call to its Redis (a command timing out on a loaded machine, a reconnect) holds its
      // sweeps off for a grace period at most once Redis answers again ("Store failures" in docs/architecture.md):
      // a 1 s cut of its Redis just before a 60 s wait failed it. So the wait outlasts a grace period
      // (two of the presence process's heartbeat intervals, here).
      const swept = (text: string) => metricIn(text, "chat_presence_sweeps_total") ?? 0;
      await waitFor(
        async () => swept(await scrape("presence")) > swept(before.presence!),
        "a sweep finished by the presence process",
        PRESENCE_GRACE_MS + 30_000,
        200,
      );
      const after = Object.fromEntries(await Promise.all(ROLES.map(async (r) => [r, await scrape(r)] as const)));
      // Summed over every series matched: a labelled counter's series are all there from the start, at 0,
      // and the first one matched need not be the one that rose (another refusal code, another push kind).
      const total = (text: string, name: string, labels: string) =>
        text
          .split("\n")
          .filter((l) => (l.startsWith(`${name} `) || l.startsWith(`${name}{`)) && l.includes(labels))
          .reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(" ") + 1)), 0);
      const rose = (role: string, name: string, labels = "") => {
        const [was, now] = [total(before[role]!, name, labels), total(after[role]!, name, labels)];
        assert.ok(now > was, `${role}: ${name}{${labels}} went from ${was} to ${now}`);
      };
      rose("api", "chat_api_requests_total", 'method="MessageService/SendMessage",code="ok"');
      rose("api", "chat_api_request_seconds_count", 'method="MessageService/SendMessage"');
      rose("api", "chat_auth_events_total", 'event="login_failed"');
      rose("api", "chat_auth_events_total", 'event="refresh_reused"');
      rose("chat-server", "chat_messages_in_total");
      rose("chat-server", "chat_sends_total", 'kind="edit"');
      rose("chat-server", "chat_entries_out_total");
      rose("chat-server", "chat_frames_refused_total");
      rose("pipeline", "chat_messages_sequenced_total");
      rose("pipeline", "chat_inbox_appends_total");
      rose("pipeline", "chat_delivery_latency_seconds_count");
      rose("notifier", "chat_push_sends_total", 'action="delivered"');
      rose("notifier", "chat_push_sends_total", 'action="retry"');
      rose("presence", "chat_presence_sweeps_total");
      assert.ok((metricIn(after["chat-server"]!, "chat_sessions") ?? 0) >= 1, "chat-server: chat_sessions");
      assert.ok((metricIn(after.gateway!, "gateway_sessions") ?? 0) >= 1, "gateway: gateway_sessions");
      assert.ok((metricIn(after.gateway!, "gateway_connections") ?? 0) >= 1, "gateway: gateway_connections");
      for (const group of ["chat-sequencer", "chat-inbox-writer"]) assert.notEqual(metricIn(after.pipeline!, "chat_queue_consumer_lag", `group="${group}"`), undefined, group);
      assert.notEqual(metricIn(after.notifier!, "chat_queue_consumer_lag", 'group="chat-notifier"'), undefined, "notifier lag");
    });
    await Promise.all([...roles.values()].map((p) => p.stop()));
    assert.deepEqual(leaks(logs, secrets), []);
    assert.ok([...logs.values()].every((lines) => lines.length > 0), "every role logged something");
  });
});

describe("chatd: its metrics and its log", function () {
  this.timeout(120_000);
  let dataDir: string | undefined;
  let chatd: RoleProcess | undefined;
  let receiver: PushReceiver;
  after(async () => {
    await chatd?.stop();
    await receiver?.stop();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  it("names its metrics by Prometheus's conventions and logs no text, token, password or push secret", async () => {
    receiver = await new PushReceiver().start();
    dataDir = mkdtempSync(join(tmpdir(), "chatd-obs-"));
    const lines: string[] = [];
    chatd = await startRole(
      "chatd",
      {
        CHAT_DATA_DIR: dataDir,
        CHAT_HTTP_PORT: "0",
        CHAT_GRPC_PORT: "0",
        CHAT_PUSH_ALLOW_HTTP: "true",
        CHAT_PUSH_COLLAPSE_MS: "100",
        CHAT_PUSH_BACKOFF_MS: "100",
        CHAT_VAPID_SUBJECT: "mailto:ops@chat.test",
        CHAT_LOG_LEVEL: "debug",
      },
      60_000,
      { onLine: (l) => lines.push(l) },
    );
    chatd.child.stderr!.on("data", (d) => lines.push(String(d)));
    const http = String(chatd.info.http);
    const secrets = await exercise(http, String(chatd.info.ws), receiver, async () => {
      const text = await (await fetch(`${http}/metrics`)).text();
      assert.deepEqual(namingProblems(text), []);
      assert.ok((metricIn(text, "chat_delivery_latency_seconds_count") ?? 0) > 0, "delivery latency");
    });
    await chatd.stop();
    assert.deepEqual(leaks(new Map([["chatd", lines]]), secrets), []);
  });
});

/**
 * Sends (by a session and by the api), edits, refuses a send, searches, signs
 * in with a wrong password, spends a refresh token twice and pushes to an
 * offline user's endpoints (one after a retry, one gone): what a log line
 * could give away of texts and secrets. `check` runs once all of it went
 * through, the processes still up. Returns those texts and secrets, by what
 * they are.
 */
async function exercise(api: string, ws: string, receiver: PushReceiver, check: () => Promise<void>): Promise<Record<string, string>> {
  const marker = `obsmark${Math.random().toString(36).slice(2, 10)}`;
  const alice = await signUp(api, "obsa");
  const bob = await signUp(api, "obsb");
  await addDevice(api, bob);
  const subs: TestSubscription[] = [receiver.subscribe({ kind: "failFirst", times: 1, status: 503 }), receiver.subscribe({ kind: "status", status: 410 })];
  for (const [i, sub] of subs.entries()) {
    await createClient(PushService, authed(api, bob.devices[i]!.token)).registerPushEndpoint({
      endpoint: { case: "webPush", value: { endpoint: sub.endpoint, p256dh: sub.p256dh, auth: sub.auth } },
      settings: { hidePreview: false, muted: false },
    });
  }
  const channelId = (await alice.api.channels.openDirect({ userId: bob.userId })).channel!.channelId;
  const a = await new TestDevice(ws, alice.devices[0]!.token).connect();
  try {
    assert.equal((await a.send(channelId, `${marker} first`)).kind.case, "sendAck");
    // Sequenced after the ack (in the cluster by the pipeline): its seq is known once it comes back.
    const [first] = await waitFor(() => (a.messagesIn(channelId).length > 0 ? a.messagesIn(channelId) : undefined), "alice's own message back", 30_000, 50);
    assert.equal((await a.edit(channelId, first!.seq, `${marker} edited`)).kind.case, "sendAck");
    await alice.api.messages.sendMessage({ channelId, text: `${marker} by the api`, clientMsgId: `api-${marker}` });
    // Refused sends and calls carry the text too.
    assert.equal((await a.send(channelId + 1n, `${marker} nowhere`)).kind.case, "error");
    await alice.api.messages.searchMessages({ channelId, query: marker });
    await rpcError(() => apiClients(api).auth.login({ username: alice.username, password: `${marker}-wrong`, device: { name: "x" } }));
    // A refresh token spent twice, past its retry grace (the token it got is spent too), on a device of its own.
    await addDevice(api, alice);
    const spent = alice.devices.at(-1)!;
    const refreshed = await apiClients(api).auth.refresh({ refreshToken: spent.refreshToken });
    await apiClients(api).auth.refresh({ refreshToken: refreshed.credentials!.refreshToken });
    await rpcError(() => apiClients(api).auth.refresh({ refreshToken: spent.refreshToken }));
    await waitFor(() => receiver.deliveredTo(subs[0]!).length > 0 && receiver.pushesTo(subs[1]!).length > 0, "bob's pushes", 60_000, 100);
    const b = await new TestDevice(ws, bob.devices[0]!.token).connect();
    await waitFor(() => b.messagesIn(channelId).length >= 2, "bob's messages", 30_000, 50);
    await b.close();
    await check();
    return {
      "message text": marker,
      "access token": alice.devices[0]!.token,
      "refreshed access token": refreshed.credentials!.accessToken,
      "refresh token": alice.devices[0]!.refreshToken,
      "spent refresh token": spent.refreshToken,
      "new refresh token": refreshed.credentials!.refreshToken,
      "bob's refresh token": bob.devices[1]!.refreshToken,
      password: alice.password,
      "push endpoint": subs[0]!.endpoint,
      "push auth secret": subs[0]!.auth,
      "push key": subs[0]!.p256dh,
    };
  } finally {
    await a.close();
  }
}

/** Each line of `logs` (by role) that holds one of `secrets`, naming the role and what it gave away. */
function leaks(logs: ReadonlyMap<string, readonly string[]>, secrets: Record<string, string>): string[] {
  return [...logs].flatMap(([role, lines]) =>
    Object.entries(secrets).flatMap(([what, secret]) => lines.filter((l) => l.includes(secret)).map((l) => `${role} logged the ${what}: ${l.slice(0, 300)}`)),
  );
}

describe("distributed mode: a pipeline whose Cassandra is away, as its ops port shows it", function () {
  this.timeout(300_000);
  const deployment = useDeployment("obscut");
  let proxy: TcpProxy | undefined;
  after(async () => {
    await proxy?.close();
  });

  it("counts each failed batch from the first, answers /healthz 503 naming the stage after CHAT_PIPELINE_STALL_MS of them, and 200 once Cassandra is back", async () => {
    const env = { ...deployment.env, CHAT_OPS_PORT: "0", CHAT_KAFKA_PARTITIONS: "1", CHAT_PIPELINE_STALL_MS: String(STALL_MS) };
    const api = await startRole("api", env);
    await startRole("chat-server", env);
    // Only the pipeline is cut off: the chat server goes on acking sends into Kafka.
    proxy = await TcpProxy.start(engineConfig().cassandraContactPoints[0]!);
    const pipeline = await startRole("pipeline", { ...env, CHAT_CASSANDRA_CONTACT_POINTS: proxy.address });
    const gateway = await startRole("gateway", env);
    const ops = `http://127.0.0.1:${String(pipeline.info.ops)}`;
    const failed = async () => metricIn(await (await fetch(`${ops}/metrics`)).text(), "chat_pipeline_batches_failed_total", 'stage="sequencer"');
    const health = async () => {
      const res = await fetch(`${ops}/healthz`);
      return { status: res.status, body: await res.text() };
    };
    const [alice, bob] = [await signUp(String(api.info.http), "cut"), await signUp(String(api.info.http), "cut")];
    const channelId = (await alice!.api.channels.openDirect({ userId: bob!.userId })).channel!.channelId;
    const a = await new TestDevice(String(gateway.info.ws), alice!.devices[0]!.token).connect();
    try {
      assert.equal(await failed(), 0);
      assert.equal((await health()).status, 200);
      proxy.cut("reset");
      const cutAt = Date.now();
      assert.equal((await a.send(channelId, "during the cut")).kind.case, "sendAck");
      await waitFor(async () => (await failed())! > 0, "a failed batch counted", 20_000, 100);
      assert.equal((await health()).status, 200, "not yet: a blip is no stall");
      let last = { status: 0, body: "" };
      // Well before the default 30 s: a worker that ignored CHAT_PIPELINE_STALL_MS fails here.
      await waitFor(async () => (last = await health()).status === 503, "/healthz 503", 25_000, 250);
      assert.ok(Date.now() - cutAt >= STALL_MS, `503 after ${Date.now() - cutAt} ms`);
      assert.match(JSON.parse(last.body).checks.sequencer, /^sequencer: every batch has failed for \d+ s \(last: .+\)$/);
      await proxy.restore();
      await waitFor(async () => (await health()).status === 200, "/healthz 200 again", 60_000, 250);
      await waitFor(() => a.messagesIn(channelId).length === 1, "the message sent during the cut delivered", 30_000, 50);
    } finally {
      await a.close();
    }
  });
});

describe("distributed mode: a notifier whose Cassandra is away, as its ops port shows it", function () {
  this.timeout(300_000);
  const deployment = useDeployment("obsnot");
  let proxy: TcpProxy | undefined;
  let receiver: PushReceiver | undefined;
  after(async () => {
    await proxy?.close();
    await receiver?.stop();
  });

  it("counts the endpoint and mute reads that fail (it retries or notifies anyway, so nothing else showed them)", async () => {
    const env = { ...deployment.env, CHAT_OPS_PORT: "0", CHAT_KAFKA_PARTITIONS: "1", CHAT_PUSH_ALLOW_HTTP: "true", CHAT_PUSH_COLLAPSE_MS: "100", CHAT_PUSH_BACKOFF_MS: "100", CHAT_VAPID_SUBJECT: "mailto:ops@chat.test" };
    const api = await startRole("api", env);
    await startRole("chat-server", env);
    await startRole("pipeline", env);
    const gateway = await startRole("gateway", env);
    proxy = await TcpProxy.start(engineConfig().cassandraContactPoints[0]!);
    const notifier = await startRole("notifier", { ...env, CHAT_CASSANDRA_CONTACT_POINTS: proxy.address });
    const errors = async (op: string) => metricIn(await (await fetch(`http://127.0.0.1:${String(notifier.info.ops)}/metrics`)).text(), "chat_push_engine_errors_total", `op="${op}"`);
    receiver = await new PushReceiver().start();
    const sub = receiver.subscribe();
    const [alice, bob] = [await signUp(String(api.info.http), "nc"), await signUp(String(api.info.http), "nc")];
    await createClient(PushService, authed(String(api.info.http), bob!.devices[0]!.token)).registerPushEndpoint({
      endpoint: { case: "webPush", value: { endpoint: sub.endpoint, p256dh: sub.p256dh, auth: sub.auth } },
      settings: { hidePreview: false, muted: false },
    });
    const channelId = (await alice!.api.channels.openDirect({ userId: bob!.userId })).channel!.channelId;
    const a = await new TestDevice(String(gateway.info.ws), alice!.devices[0]!.token).connect();
    try {
      for (const op of ["endpoints", "mutes"]) assert.equal(await errors(op), 0, op);
      proxy.cut("reset");
      assert.equal((await a.send(channelId, "while the notifier's store is away")).kind.case, "sendAck");
      await waitFor(async () => (await errors("endpoints"))! > 0 && (await errors("mutes"))! > 0, "the notifier's failed reads counted", 30_000, 100);
      await proxy.restore();
    } finally {
      await a.close();
    }
  });
});
