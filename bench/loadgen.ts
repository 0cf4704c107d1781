/**
 * A load-generator process. The orchestrator (bench/run.ts) forks several of
 * these so that the clients do not share an event loop with each other or
 * with the server, and drives them over IPC. Every loop here is bounded by a
 * duration or a deadline and stops by itself.
 */
import type { ErrorCode, InboxEntry } from "../gen/es/chat/v1/types_pb.js";
import { BenchSession, now, type PendingSend, type SessionSpec } from "./lib/session.js";
import { Samples } from "./lib/stats.js";
import type { WorkerCommand, WorkerReply, PhaseReport, StormReport, ConnectReport } from "./lib/ipc.js";

/** Message keys: sender's global index times KEY_SPAN plus the sender's running number. */
export const KEY_SPAN = 2 ** 22;

let workerId = 0;
let wsUrls: string[] = [];
let localAddresses: string[] = [];
let ackDelayMs = 250;
let connectTimeoutMs = 30_000;
const sessions: BenchSession[] = [];
const byG = new Map<number, BenchSession>();
/** Sessions being dropped on purpose (storm, shutdown): their close is not a failure to reconnect. */
let deliberate = false;
const closeCodes = new Map<number, number>();
let unexpectedCloses = 0;

// State of the current measured phase.
let tag = "";
let tagPrefix = "";
let deliveryLat = new Samples();
let ackLat = new Samples();
let received = new Map<number, Set<number>>();
let deliveries = 0;
let dupMessages = 0;
let lastDeliveryAt = 0;
let firstDeliveryAt = 0;
let ackedKeys: number[] = [];
let sendErrors = new Map<string, number>();
let sentCount = 0;

const hooks = {
  onEntry(s: BenchSession, e: InboxEntry, at: number) {
    const m = e.message;
    if (!m || !tag || !m.clientMsgId.startsWith(tagPrefix)) return;
    const key = parseInt(m.clientMsgId.slice(tagPrefix.length), 36);
    let set = received.get(s.g);
    if (!set) received.set(s.g, (set = new Set()));
    if (set.has(key)) {
      // A second inbox entry for one send: the resend created a second message.
      dupMessages++;
      return;
    }
    set.add(key);
    deliveries++;
    if (firstDeliveryAt === 0) firstDeliveryAt = at;
    lastDeliveryAt = at;
    // The sender's own copy (its inbox gets the message too) is not a delivery anyone waits for.
    if (Math.floor(key / KEY_SPAN) === s.g) return;
    const bar = m.text.indexOf("|");
    const t0 = Number(m.text.slice(0, bar));
    deliveryLat.push(at - t0);
  },
  onAck(_s: BenchSession, p: PendingSend, at: number) {
    if (!p.clientMsgId.startsWith(tagPrefix)) return;
    ackLat.push(at - p.t0);
    ackedKeys.push(p.key);
  },
  onSendError(_s: BenchSession, _p: PendingSend, code: ErrorCode, message: string) {
    const k = `${code}:${message.slice(0, 60)}`;
    sendErrors.set(k, (sendErrors.get(k) ?? 0) + 1);
  },
  onClose(s: BenchSession, code: number, wasOpen: boolean) {
    closeCodes.set(code, (closeCodes.get(code) ?? 0) + 1);
    if (deliberate || !wasOpen) return;
    // The server closed a live session: a real client reconnects after a pause.
    unexpectedCloses++;
    setTimeout(() => {
      if (!deliberate && !s.open) void connectOne(s).catch(() => {});
    }, 1000);
  },
};

function connectOne(s: BenchSession): Promise<void> {
  return s.connect({
    url: wsUrls[s.g % wsUrls.length]!,
    localAddress: localAddresses.length > 0 ? localAddresses[s.g % localAddresses.length] : undefined,
    timeoutMs: connectTimeoutMs,
    ackDelayMs,
  });
}

/** Runs `fn` over items with at most `limit` in flight. */
async function pool<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const runners = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const item = items[next++]!;
      await fn(item);
    }
  });
  await Promise.all(runners);
}

/** Connects the sessions not open yet (at most `limit` of them). */
async function connectAll(concurrency: number, limit = Infinity): Promise<ConnectReport> {
  const t0 = now();
  const todo = sessions.filter((s) => !s.open).slice(0, limit);
  const errors = new Map<string, number>();
  const times = new Samples();
  let failed = 0;
  await pool(todo, concurrency, async (s) => {
    const start = now();
    try {
      await connectOne(s);
      times.push(now() - start);
    } catch (err) {
      failed++;
      const k = (err as Error).message.slice(0, 80);
      errors.set(k, (errors.get(k) ?? 0) + 1);
    }
  });
  return { connected: sessions.filter((s) => s.open).length, failed, errors: [...errors], durationMs: now() - t0, handshakeMs: times.values().slice() };
}

// Heartbeats: one sweep for all sessions instead of a timer each.
const heartbeats = setInterval(() => {
  const at = now();
  for (const s of sessions) s.heartbeat(at);
}, 1000);

function resetPhase(newTag: string): void {
  tag = newTag;
  tagPrefix = newTag ? `${newTag}.` : "";
  deliveryLat = new Samples();
  ackLat = new Samples();
  received = new Map();
  deliveries = 0;
  dupMessages = 0;
  lastDeliveryAt = 0;
  firstDeliveryAt = 0;
  ackedKeys = [];
  sendErrors = new Map();
  sentCount = 0;
}

let padding = "";

/**
 * Open loop: send i is due at start + i/rate whatever happened to the earlier
 * ones, and its latency counts from that due time, so a slow server cannot
 * hide its queueing by slowing the client down (no coordinated omission).
 */
async function sendPhase(cmd: Extract<WorkerCommand, { type: "phase-start" }>): Promise<void> {
  resetPhase(cmd.tag);
  padding = "x".repeat(Math.max(0, cmd.textBytes - 20));
  const senders = cmd.senders.map((x) => ({ s: byG.get(x.g)!, channelId: BigInt(x.channelId), n: 0 }));
  const total = Math.floor((cmd.rate * cmd.durationMs) / 1000);
  const start = now() + 20;
  const perMs = cmd.rate / 1000;
  await new Promise<void>((resolve) => {
    const tick = () => {
      const at = now();
      // Send i is due at start + i/rate: at `at`, sends 0..floor((at - start) * rate) are due.
      const due = at < start ? 0 : Math.min(total, Math.floor((at - start) * perMs) + 1);
      while (sentCount < due) {
        const x = senders[sentCount % senders.length]!;
        const t0 = start + sentCount / perMs;
        const key = x.s.g * KEY_SPAN + x.n++;
        x.s.send({ key, clientMsgId: `${tagPrefix}${key.toString(36)}`, channelId: x.channelId, text: `${t0.toFixed(3)}|${padding}`, t0, attempts: 0 });
        sentCount++;
      }
      if (sentCount >= total) return resolve();
      setTimeout(tick, 1);
    };
    if (total === 0 || senders.length === 0) resolve();
    else setTimeout(tick, 20);
  });
  // Wait (bounded) for the acks of everything sent.
  const deadline = now() + cmd.ackTimeoutMs;
  while (now() < deadline && senders.some((x) => x.s.unacked > 0)) await sleep(20);
}

async function storm(cmd: Extract<WorkerCommand, { type: "storm" }>): Promise<StormReport> {
  deliberate = true;
  const start = now();
  for (const s of sessions) s.drop();
  deliberate = false;
  let failed = 0;
  await pool(sessions, cmd.concurrency, async (s) => {
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        await connectOne(s);
        return;
      } catch {
        await sleep(200 * (attempt + 1));
      }
    }
    failed++;
  });
  const deadline = now() + cmd.syncTimeoutMs;
  const synced = (s: BenchSession) => s.open && (cmd.persistent ? s.syncedAt > 0 : s.welcomeAt > 0);
  while (now() < deadline && !sessions.every(synced)) await sleep(20);
  return {
    sessions: sessions.length,
    failed,
    notSynced: sessions.filter((s) => !synced(s)).length,
    welcomeMs: Float64Array.from(sessions.filter((s) => s.welcomeAt > start).map((s) => s.welcomeAt - start)),
    syncedMs: Float64Array.from(sessions.filter(synced).map((s) => (cmd.persistent ? s.syncedAt : s.welcomeAt) - start)),
  };
}

function phaseReport(): PhaseReport {
  const r: PhaseReport = {
    sent: sentCount,
    acked: ackedKeys.length,
    ackedKeys,
    deliveries,
    dupMessages,
    firstDeliveryAt,
    lastDeliveryAt,
    deliveryLatency: deliveryLat.values().slice(),
    ackLatency: ackLat.values().slice(),
    received: [...received].map(([g, set]) => [g, [...set]] as [number, number[]]),
    sendErrors: [...sendErrors],
    closeCodes: [...closeCodes],
    unexpectedCloses,
  };
  return r;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function reply(msg: WorkerReply): void {
  process.send!(msg);
}

process.on("message", (raw) => {
  const cmd = raw as WorkerCommand;
  void (async () => {
    try {
      switch (cmd.type) {
        case "init": {
          workerId = cmd.workerId;
          wsUrls = cmd.wsUrls;
          localAddresses = cmd.localAddresses;
          ackDelayMs = cmd.ackDelayMs;
          connectTimeoutMs = cmd.connectTimeoutMs;
          for (const spec of cmd.sessions as SessionSpec[]) {
            const s = new BenchSession(spec, hooks);
            sessions.push(s);
            byG.set(spec.g, s);
          }
          return reply({ type: "ok", id: cmd.id });
        }
        case "connect":
          return reply({ type: "connected", id: cmd.id, report: await connectAll(cmd.concurrency, cmd.limit ?? Infinity) });
        case "status":
          return reply({
            type: "status",
            id: cmd.id,
            open: sessions.filter((s) => s.open).length,
            deliveries,
            lastDeliveryAt,
            closeCodes: [...closeCodes],
            unexpectedCloses,
          });
        case "phase-start":
          await sendPhase(cmd);
          return reply({ type: "phase-sent", id: cmd.id, sent: sentCount, acked: ackedKeys.length, unacked: sessions.reduce((n, s) => n + s.unacked, 0) });
        case "phase-report": {
          const report = phaseReport();
          resetPhase("");
          return reply({ type: "phase-report", id: cmd.id, report });
        }
        case "storm":
          return reply({ type: "storm", id: cmd.id, report: await storm(cmd) });
        case "close": {
          deliberate = true;
          clearInterval(heartbeats);
          for (const s of sessions) s.close();
          reply({ type: "ok", id: cmd.id });
          setTimeout(() => process.exit(0), 500).unref();
          return;
        }
      }
    } catch (err) {
      reply({ type: "error", id: cmd.id, message: `worker ${workerId}: ${(err as Error).stack ?? err}` });
    }
  })();
});

process.on("disconnect", () => process.exit(0));
