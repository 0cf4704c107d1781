import assert from "node:assert/strict";
import { ChannelNoteKind, ErrorCode, type Message } from "../../gen/es/chat/v1/types_pb.js";
import { PageDirection } from "../../gen/es/chat/v1/messages_pb.js";
import { addDevice, apiClients, signUp, type TestUser } from "../support/api.js";
import { removeDataDir, startChatd, type ChatdProcess } from "../support/chatd.js";
import { TestDevice } from "../support/device.js";
import { seededRandom } from "../support/random.js";
import { waitFor, waitOut } from "../support/wait.js";

/*
 * A seeded random walk over chatd (real WebSocket devices, real restarts) checked against a
 * model of what was acked: sends (bursts, resends by client_msg_id), abrupt disconnects,
 * reconnects from the device's cursor, group adds and removals, reads and graceful restarts;
 * and edits, deletes, reactions and replies (others' messages, deleted ones, channels left, an
 * edit racing a delete, an acked change sent again with its key), each acked or refused as the
 * model says. At checkpoints every connected device must hold exactly its user's inbox: the
 * messages of each channel over the user's membership, gap-free and in channel order, each
 * once, each shown as history shows it (text, edited, deleted, reactions) and history as the
 * acked changes left it.
 *
 * INVARIANT_SEED=<n> repeats a run (the seed is printed when one fails); INVARIANT_STEPS=<n>
 * makes it longer (default 300); INVARIANT_LOG=<n> keeps the last n steps for the failure's
 * report (default 40).
 */

const SEED = process.env.INVARIANT_SEED ? Number(process.env.INVARIANT_SEED) : Math.floor(Math.random() * 2 ** 31);
const STEPS = Number(process.env.INVARIANT_STEPS ?? 300);
const CHECK_EVERY = 60;

interface Dev {
  user: User;
  name: string;
  deviceId: bigint;
  token: string;
  device: TestDevice;
  connected: boolean;
  /** Bumped on every connect and disconnect, so a send waiting for its reply sees the session go. */
  session: number;
  /** Where this session's entries start in `device.received`, and whether it asked to sync (which may repeat some). */
  sessionFrom: number;
  askedSync: boolean;
}

interface User {
  test: TestUser;
  name: string;
  devs: Dev[];
}

interface Chan {
  id: bigint;
  kind: "direct" | "group";
  owner: User;
  members: Set<User>;
  /**
   * Users added or removed by this run, in order: each must have left a note. `racing`: the sends
   * of the channel in flight while it was made, which may land either side of it.
   */
  changes: { user: User; added: boolean; racing?: Set<string> }[];
}

interface SendRec {
  key: string;
  dev: Dev;
  chan: Chan;
  text: string;
  /** Every message id a reply acked this key with: one, however often it was sent. */
  ackIds: Set<bigint>;
  /** Sent, with no ack yet (its session went, or chatd restarted): sent again on reconnect. */
  pending: boolean;
  inFlight: number;
  /** Refused NOT_A_MEMBER; whether the model had the sender in the channel then. */
  refused?: { memberThen: boolean };
  /** A reply: the seq it answers. */
  replyTo?: bigint;
  /** A reply refused NOT_FOUND: its target must be deleted by then. */
  targetGone?: boolean;
}

/** What a message must show after the changes acked to it (an untouched message is absent). */
interface MsgState {
  text: string;
  edited: boolean;
  deleted: boolean;
  /** By user id: the standing reactions. */
  reactions: Map<bigint, string>;
}

type ChangeKind = "edit" | "delete" | "react";

/** An acked change, kept to be sent again with its key. */
interface ChangeRec {
  key: string;
  dev: Dev;
  chan: Chan;
  kind: ChangeKind;
  seq: bigint;
  text: string;
  id: bigint;
}

class Violation extends Error {}

describe(`chatd invariants under a seeded random walk (INVARIANT_SEED=${SEED})`, function () {
  this.timeout(Math.max(120_000, STEPS * 1_000));
  const rnd = seededRandom(SEED);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const chance = (p: number) => rnd() < p;
  const env = { CHAT_API_AUTH_PER_SEC: "0", CHAT_ACCESS_TOKEN_TTL_S: "86400" };
  let chatd: ChatdProcess;
  let dataDir: string | undefined;
  const users: User[] = [];
  const chans: Chan[] = [];
  const sends = new Map<string, SendRec>();
  const inFlight = new Set<Promise<void>>();
  /** What the sends in flight found wrong, thrown after the step that sees it. */
  const failures: unknown[] = [];
  /** The read position each user moved by MarkRead or a receipt, per channel, during their current membership. */
  const reads = new Map<User, Map<Chan, bigint>>();
  const initialMembers = new Map<Chan, Set<User>>();
  const log: string[] = [];
  let keyCounter = 0;
  /** By `channel/seq`: the state the acked changes left each changed message in. */
  const states = new Map<string, MsgState>();
  const changes: ChangeRec[] = [];
  const EMOJIS = ["👍", "❤️", "😂", "🎉"];
  /** How the changes were answered ("edit NOT_FOUND": n), for the long run's summary. */
  const outcomes = new Map<string, number>();
  const count = (what: string) => outcomes.set(what, (outcomes.get(what) ?? 0) + 1);
  const restarts = { stopped: 0, killed: 0 };

  const note = (line: string) => {
    log.push(line);
    if (log.length > Number(process.env.INVARIANT_LOG ?? 40)) log.shift();
  };
  const api = (u: User) => apiClients(chatd.httpUrl, u.test.devices[0]!.token);
  const allDevs = () => users.flatMap((u) => u.devs);

  after(async () => {
    await Promise.all(allDevs().map((d) => d.device.close()));
    await chatd?.stop();
    if (dataDir) removeDataDir(dataDir);
  });

  afterEach(function () {
    if (this.currentTest?.state === "failed") {
      console.log(`chatd invariants failed with INVARIANT_SEED=${SEED} INVARIANT_STEPS=${STEPS}; last steps:\n  ${log.join("\n  ")}`);
    }
  });

  async function connect(d: Dev): Promise<void> {
    const before = d.device.cursor;
    // Drawn before any await, so that devices connecting at once draw in the same order every run.
    const askSync = chance(0.3);
    const sessionFrom = d.device.received.length;
    await d.device.connect(chatd.wsUrl);
    const w = d.device.welcome();
    if (!w) throw new Violation(`${d.name} was refused on connect: ${d.device.closeCode} ${d.device.closeReason}`);
    d.connected = true;
    d.session++;
    d.sessionFrom = sessionFrom;
    d.askedSync = false;
    // The server holds one cursor per device, moved only by that device's acks.
    if (w.deviceCursor > before) throw new Violation(`${d.name}: the welcome's cursor ${w.deviceCursor} is past what the device stored (${before})`);
    if (w.headInboxSeq < before) throw new Violation(`${d.name}: the welcome's head ${w.headInboxSeq} is behind what the device stored (${before})`);
    if (askSync) {
      d.askedSync = true;
      d.device.sendFrame({ kind: { case: "sync", value: { afterInboxSeq: before } } });
    }
    for (const s of sends.values()) if (s.dev === d && s.pending && s.inFlight === 0) startSend(s);
  }

  /** Drops the socket without a close handshake, as a lost network does, and waits for its close event (which would otherwise land on the next session). */
  async function disconnect(d: Dev): Promise<void> {
    d.device.ws?.terminate();
    d.connected = false;
    d.session++;
    await waitFor(() => d.device.closeCode !== undefined, `${d.name}'s socket to close`);
  }

  /** Sends (again) until acked, refused, or the session goes; a send whose session went stays pending. */
  function startSend(s: SendRec): void {
    s.inFlight++;
    const p = (async () => {
      try {
        for (;;) {
          const d = s.dev;
          if (!d.connected) return;
          const session = d.session;
          const ref = d.device.sendFrame({ kind: { case: "send", value: { channelId: s.chan.id, text: s.text, clientMsgId: s.key, replyToSeq: s.replyTo ?? 0n } } });
          const reply = await waitFor(
            () =>
              d.device.frames.find((f) => f.ref === ref && (f.kind.case === "sendAck" || f.kind.case === "error")) ??
              (d.session !== session || d.device.closeCode !== undefined ? "gone" : undefined),
            `the reply to ${s.key}`,
          );
          if (reply === "gone") return;
          if (reply.kind.case === "sendAck") {
            s.ackIds.add(reply.kind.value.messageId);
            s.pending = false;
            if (s.ackIds.size > 1) throw new Violation(`${s.key} was acked with ${s.ackIds.size} message ids: ${[...s.ackIds].join(", ")}`);
            return;
          }
          if (reply.kind.case !== "error") return;
          if (reply.kind.value.code === ErrorCode.RATE_LIMITED) {
            await waitOut(reply.kind.value.retryAfterMs);
            continue;
          }
          // Chatd stopping refuses a send it will not take; the device sends it again on its next session.
          if (reply.kind.value.code === ErrorCode.UNAVAILABLE) return;
          // A send racing its sender's removal (checked against the notes), or sent again after it.
          if (reply.kind.value.code === ErrorCode.NOT_A_MEMBER && s.ackIds.size === 0) {
            s.refused = { memberThen: s.chan.members.has(d.user) };
            s.pending = false;
            return;
          }
          // A reply whose target was deleted before it got there (checked against the model later).
          if (reply.kind.value.code === ErrorCode.NOT_FOUND && s.replyTo && s.ackIds.size === 0) {
            s.targetGone = true;
            s.pending = false;
            return;
          }
          throw new Violation(`${s.key} to channel ${s.chan.id} refused: ${ErrorCode[reply.kind.value.code]} ${reply.kind.value.message}`);
        }
      } finally {
        s.inFlight--;
      }
    })();
    const tracked: Promise<void> = p.catch((e: unknown) => void failures.push(e)).finally(() => inFlight.delete(tracked));
    inFlight.add(tracked);
  }

  async function settleSends(): Promise<void> {
    while (inFlight.size > 0) await Promise.all([...inFlight]);
    if (failures.length > 0) throw failures[0];
  }

  function newSend(d: Dev, chan: Chan): SendRec {
    const key = `k${keyCounter++}`;
    const s: SendRec = { key, dev: d, chan, text: `t ${key}`, ackIds: new Set(), pending: true, inFlight: 0 };
    sends.set(key, s);
    return s;
  }

  // ---- the steps ----

  const chansOf = (u: User) => chans.filter((c) => c.members.has(u));

  function stepSend(): void {
    const d = pick(allDevs().filter((x) => x.connected && chansOf(x.user).length > 0));
    if (!d) return;
    const chan = pick(chansOf(d.user));
    const burst = chance(0.25) ? 2 + Math.floor(rnd() * 12) : 1;
    note(`send x${burst} ${d.name} -> ${chan.id}`);
    for (let i = 0; i < burst; i++) {
      const s = newSend(d, chan);
      startSend(s);
      // The same key again at once, before the first is acked.
      if (chance(0.15)) startSend(s);
    }
  }

  async function stepResendOld(): Promise<void> {
    if (chance(0.4)) return resendByApi();
    const acked = [...sends.values()].filter((s) => s.ackIds.size > 0 && s.dev.connected && s.chan.members.has(s.dev.user));
    if (acked.length === 0) return;
    const s = pick(acked);
    note(`resend ${s.key} on ${s.dev.name}`);
    startSend(s);
  }

  /**
   * A send again over the api's SendMessage, as the same device (its token): one acked before, or
   * one whose session went before its ack (a client falling back to HTTP). Same key, same message.
   */
  async function resendByApi(): Promise<void> {
    const candidates = [...sends.values()].filter((s) => s.inFlight === 0 && (s.ackIds.size > 0 || (s.pending && !s.replyTo)) && s.chan.members.has(s.dev.user));
    if (candidates.length === 0) return;
    const s = pick(candidates);
    note(`resend ${s.key} of ${s.dev.name} over the api`);
    const res = await apiClients(chatd.httpUrl, s.dev.token).messages.sendMessage({ clientMsgId: s.key, channelId: s.chan.id, text: s.text, replyToSeq: s.replyTo ?? 0n });
    if (s.ackIds.size > 0 && !res.duplicate) throw new Violation(`${s.key} acked before, sent again over the api: not a duplicate`);
    s.ackIds.add(res.messageId);
    s.pending = false;
    if (s.ackIds.size > 1) throw new Violation(`${s.key} was acked with ${s.ackIds.size} message ids: ${[...s.ackIds].join(", ")}`);
  }

  const stateKey = (chan: Chan, seq: bigint) => `${chan.id}/${seq}`;

  /** The messages (not notes, not changes) the user's devices hold of a channel. */
  function heldMessages(u: User, chan: Chan): Message[] {
    const out = new Map<bigint, Message>();
    for (const d of u.devs) for (const m of d.device.messagesIn(chan.id)) if (m.targetSeq === 0n && !m.note) out.set(m.seq, m);
    return [...out.values()];
  }

  function stateOf(chan: Chan, m: Message): MsgState {
    const k = stateKey(chan, m.seq);
    let st = states.get(k);
    if (!st) {
      st = { text: sends.get(m.clientMsgId)!.text, edited: false, deleted: false, reactions: new Map() };
      states.set(k, st);
    }
    return st;
  }

  /** What chatd must answer a change (or reply) with, as changes.ts and the membership check document; undefined: an ack. */
  function expectedRefusal(d: Dev, chan: Chan, kind: ChangeKind | "reply", target: Message): ErrorCode | undefined {
    if (!chan.members.has(d.user)) return ErrorCode.NOT_A_MEMBER;
    if (states.get(stateKey(chan, target.seq))?.deleted) return ErrorCode.NOT_FOUND;
    if (kind === "react" || kind === "reply" || target.senderUserId === d.user.test.userId) return undefined;
    if (kind === "edit") return ErrorCode.PERMISSION_DENIED;
    // The group's owner (its creator here: the walk gives no roles) deletes anyone's message.
    return chan.kind === "group" && chan.owner === d.user ? undefined : ErrorCode.PERMISSION_DENIED;
  }

  function changeFields(kind: ChangeKind, seq: bigint) {
    return kind === "edit" ? { editSeq: seq } : kind === "delete" ? { deleteSeq: seq } : { reactSeq: seq };
  }

  /** Sends a change over the device's session and waits for its ack or refusal (RATE_LIMITED waited out). */
  async function sendChange(d: Dev, chan: Chan, kind: ChangeKind, seq: bigint, text: string, key: string) {
    const session = d.session;
    for (;;) {
      const ref = d.device.sendFrame({ kind: { case: "send", value: { channelId: chan.id, text, clientMsgId: key, ...changeFields(kind, seq) } } });
      const reply = await waitFor(
        () =>
          d.device.frames.find((f) => f.ref === ref && (f.kind.case === "sendAck" || f.kind.case === "error")) ??
          (d.session !== session || d.device.closeCode !== undefined ? "gone" : undefined),
        `the reply to ${kind} ${key}`,
      );
      if (reply === "gone") throw new Violation(`${d.name}'s session went while its ${kind} ${key} waited for a reply`);
      if (reply.kind.case === "error" && reply.kind.value.code === ErrorCode.RATE_LIMITED) {
        await waitOut(reply.kind.value.retryAfterMs);
        continue;
      }
      return reply.kind.case === "sendAck" ? { ack: reply.kind.value } : { error: reply.kind.case === "error" ? reply.kind.value : undefined };
    }
  }

  function applyChange(chan: Chan, target: Message, kind: ChangeKind, text: string, by: User): void {
    const st = stateOf(chan, target);
    if (kind === "edit") Object.assign(st, { text, edited: true });
    else if (kind === "delete") {
      Object.assign(st, { text: "", deleted: true });
      st.reactions.clear();
    } else if (text) st.reactions.set(by.test.userId, text);
    else st.reactions.delete(by.test.userId);
  }

  /** One change, checked against the refusal the model expects; acked, it moves the model. */
  async function change(d: Dev, chan: Chan, kind: ChangeKind, target: Message, text: string, racingDelete = false, cutOff = false): Promise<boolean> {
    const want = expectedRefusal(d, chan, kind, target);
    const key = `c${keyCounter++}`;
    if (cutOff) {
      // Sent, and the connection lost before the reply: the device sends it again with its key on its next session, applied once or refused as before.
      d.device.sendFrame({ kind: { case: "send", value: { channelId: chan.id, text, clientMsgId: key, ...changeFields(kind, target.seq) } } });
      await disconnect(d);
      await connect(d);
    }
    const res = await sendChange(d, chan, kind, target.seq, text, key);
    const what = `${d.name}'s ${kind} ${key} of ${chan.id}/${target.seq}`;
    count(`${kind} ${res.ack ? "acked" : res.error ? ErrorCode[res.error.code] : "?"}`);
    if (res.ack) {
      if (want !== undefined) throw new Violation(`${what} was acked, expected ${ErrorCode[want]}`);
      changes.push({ key, dev: d, chan, kind, seq: target.seq, text, id: res.ack.messageId });
      // An edit that raced a delete may be acked and dropped: the delete decides.
      applyChange(chan, target, kind, text, d.user);
      return true;
    }
    const code = res.error?.code;
    if (racingDelete && code === ErrorCode.NOT_FOUND && want === undefined) return false;
    if (code !== want) throw new Violation(`${what} refused ${code === undefined ? "?" : ErrorCode[code]} ${res.error?.message}, expected ${want === undefined ? "an ack" : ErrorCode[want]}`);
    return false;
  }

  /**
   * An edit, a delete, a reaction (or taking one back) or a reply, on a message the user's devices
   * hold: mostly of a channel they are in, now and then of one they left; their own or another's,
   * deleted or not. Now and then an edit and a delete of one message at once, or an acked change
   * sent again with its key.
   */
  async function stepChange(): Promise<void> {
    if (changes.length > 0 && chance(0.2)) return resendChange();
    const d = pick(allDevs().filter((x) => x.connected));
    if (!d) return;
    const u = d.user;
    const withMsgs = chans.filter((c) => heldMessages(u, c).length > 0);
    const left = withMsgs.filter((c) => !c.members.has(u));
    const chan = left.length > 0 && chance(0.15) ? pick(left) : pick(withMsgs.filter((c) => c.members.has(u)));
    if (!chan) return;
    const msgs = heldMessages(u, chan);
    const own = msgs.filter((m) => m.senderUserId === u.test.userId);
    const target = own.length > 0 && chance(0.6) ? pick(own) : pick(msgs);
    const r = rnd();
    if (r < 0.15) {
      note(`reply by ${d.name} to ${chan.id}/${target.seq}`);
      const s = newSend(d, chan);
      s.replyTo = target.seq;
      startSend(s);
    } else if (r < 0.3 && own.includes(target)) {
      const other = pick(u.devs.filter((x) => x.connected));
      note(`edit on ${d.name} racing delete on ${other.name} of ${chan.id}/${target.seq}`);
      const text = `e${keyCounter}`;
      // Whichever lands first, the message ends deleted: an edit after the delete is dropped.
      await Promise.all([change(d, chan, "edit", target, text, true), change(other, chan, "delete", target, "")]);
    } else {
      const kind: ChangeKind = r < 0.6 ? "edit" : r < 0.72 ? "delete" : "react";
      const text = kind === "edit" ? `e${keyCounter}` : kind === "react" ? (chance(0.25) ? "" : pick(EMOJIS)) : "";
      const cutOff = chance(0.15);
      note(`${kind} ${JSON.stringify(text)} by ${d.name} of ${chan.id}/${target.seq}${cutOff ? ", cut off before its reply" : ""}`);
      await change(d, chan, kind, target, text, false, cutOff);
    }
  }

  /** An acked change sent again with its key, by its session or the api: the same id back, nothing applied again. */
  async function resendChange(): Promise<void> {
    const c = pick(changes);
    if (!c.dev.connected) return;
    const byApi = chance(0.4);
    note(`resend ${c.kind} ${c.key} on ${c.dev.name}${byApi ? " over the api" : ""}`);
    let id: bigint;
    let duplicate: boolean;
    if (byApi) {
      const res = await apiClients(chatd.httpUrl, c.dev.token).messages.sendMessage({ clientMsgId: c.key, channelId: c.chan.id, text: c.text, ...changeFields(c.kind, c.seq) });
      [id, duplicate] = [res.messageId, res.duplicate];
    } else {
      const res = await sendChange(c.dev, c.chan, c.kind, c.seq, c.text, c.key);
      if (!res.ack) throw new Violation(`${c.kind} ${c.key} acked before, sent again: refused ${res.error ? ErrorCode[res.error.code] : "?"} ${res.error?.message}`);
      [id, duplicate] = [res.ack.messageId, res.ack.duplicate];
    }
    if (id !== c.id || !duplicate) throw new Violation(`${c.kind} ${c.key} acked as ${c.id}, sent again: acked as ${id}${duplicate ? "" : ", not a duplicate"}`);
  }

  async function stepDisconnect(): Promise<void> {
    const d = pick(allDevs().filter((x) => x.connected));
    if (!d) return;
    note(`disconnect ${d.name}`);
    await disconnect(d);
  }

  async function stepReconnect(): Promise<void> {
    const d = pick(allDevs().filter((x) => !x.connected));
    if (!d) return;
    if (chance(0.3)) {
      // All of the user's devices at once, as after the network came back.
      const all = d.user.devs.filter((x) => !x.connected);
      note(`reconnect ${all.map((x) => `${x.name} from ${x.device.cursor}`).join(", ")} at once`);
      await Promise.all(all.map((x) => connect(x)));
      return;
    }
    note(`reconnect ${d.name} from ${d.device.cursor}`);
    await connect(d);
  }

  /**
   * An add or a removal. Quiet: the group's sends settled first, so the note's seq decides which
   * of them the user gets. Racing: a burst of sends to the group goes on meanwhile, and those
   * may land either side of the change, but only before its note, and without a gap.
   */
  async function stepMembership(): Promise<void> {
    const racing = chance(0.4);
    const groups = chans.filter((c) => c.kind === "group" && (racing || ![...sends.values()].some((s) => s.chan === c && s.pending)));
    const g = pick(groups);
    if (!g) return;
    if (!racing) {
      await settleSends();
      if ([...sends.values()].some((s) => s.chan === g && s.pending)) return;
    }
    const outside = users.filter((u) => !g.members.has(u));
    const removable = [...g.members].filter((u) => u !== g.owner);
    const add = outside.length > 0 && (removable.length === 0 || chance(0.5));
    if (!add && removable.length === 0) return;
    const u = pick(add ? outside : removable);
    note(`${add ? "add" : "remove"} ${u.name} ${add ? "to" : "from"} ${g.id}${racing ? " racing sends" : ""}`);
    let inRace: Set<string> | undefined;
    if (racing) {
      inRace = new Set([...sends.values()].filter((s) => s.chan === g && (s.pending || s.inFlight > 0)).map((s) => s.key));
      const senders = allDevs().filter((d) => d.connected && g.members.has(d.user));
      for (let i = 2 + Math.floor(rnd() * 10); i > 0 && senders.length > 0; i--) {
        const s = newSend(pick(senders), g);
        inRace.add(s.key);
        startSend(s);
      }
    }
    if (add) await api(g.owner).channels.addMembers({ channelId: g.id, userIds: [u.test.userId] });
    else await api(g.owner).channels.removeMember({ channelId: g.id, userId: u.test.userId });
    if (add) g.members.add(u);
    else g.members.delete(u);
    if (!add) reads.get(u)!.delete(g);
    // Sends still in flight after the change and started before it raced it too.
    if (inRace) for (const s of sends.values()) if (s.chan === g && (s.pending || s.inFlight > 0)) inRace.add(s.key);
    g.changes.push({ user: u, added: add, ...(inRace ? { racing: inRace } : {}) });
  }

  async function stepRead(): Promise<void> {
    const u = pick(users);
    const chan = pick(chansOf(u));
    if (!chan) return;
    const seen = u.devs.flatMap((d) => d.device.messagesIn(chan.id).map((m) => m.seq));
    if (seen.length === 0) return;
    const seq = pick(seen);
    const d = pick(u.devs.filter((x) => x.connected));
    if (d && chance(0.5)) {
      note(`read ${chan.id} to ${seq} by receipt on ${d.name}`);
      const session = d.session;
      for (;;) {
        const from = d.device.frames.length;
        const ref = d.device.sendFrame({ kind: { case: "read", value: { channelId: chan.id, seq } } });
        // The reader's own devices hear the receipt: then it is stored.
        const heard = await waitFor(
          () =>
            d.device.frames.slice(from).find((f) => (f.kind.case === "receipt" && f.kind.value.channelId === chan.id && f.kind.value.userId === u.test.userId && f.kind.value.seq >= seq) || (f.ref === ref && f.kind.case === "error")) ??
            (d.session !== session || d.device.closeCode !== undefined ? "gone" : undefined),
          `the receipt of ${u.name}'s read of ${chan.id}`,
        );
        if (heard === "gone") return;
        if (heard.kind.case !== "error") break;
        if (heard.kind.value.code !== ErrorCode.RATE_LIMITED) throw new Violation(`${d.name}'s read of ${chan.id} refused: ${ErrorCode[heard.kind.value.code]} ${heard.kind.value.message}`);
        await waitOut(heard.kind.value.retryAfterMs);
      }
    } else {
      note(`read ${chan.id} to ${seq} by MarkRead`);
      await api(u).messages.markRead({ channelId: chan.id, seq });
    }
    const mine = reads.get(u)!;
    if (seq > (mine.get(chan) ?? 0n)) mine.set(chan, seq);
  }

  /** Mostly a graceful stop; now and then a SIGKILL, which must lose nothing acked either. */
  async function stepRestart(): Promise<void> {
    const kill = chance(0.25);
    note(kill ? "kill -9 chatd and start it again" : "restart chatd");
    restarts[kill ? "killed" : "stopped"]++;
    await (kill ? chatd.kill() : chatd.stop());
    for (const d of allDevs()) if (d.connected) await waitFor(() => d.device.closeCode !== undefined, `${d.name} closed by the ${kill ? "kill" : "stop"}`);
    for (const d of allDevs()) if (d.connected) await disconnect(d);
    await settleSends();
    chatd = await startChatd({ dataDir, env });
  }

  // ---- the check ----

  async function history(chan: Chan): Promise<Message[]> {
    const out: Message[] = [];
    for (let anchor = 0n; ; ) {
      const page = await api(chan.owner).messages.listMessages({ channelId: chan.id, anchorSeq: anchor, direction: PageDirection.FORWARD, limit: 200 });
      out.push(...page.messages);
      if (!page.hasMore || page.messages.length === 0) return out;
      anchor = page.messages.at(-1)!.seq;
    }
  }

  /**
   * Per user, per channel: the seqs of its membership, from the notes of the adds and removals;
   * `fuzzy`, those a racing change may or may not have reached (the racing sends right before its
   * note); the seq the user's latest join counts as read from, between `joinedLo` and `joinedHi`.
   */
  function membershipSeqs(chan: Chan, msgs: Message[], u: User): { seqs: Set<bigint>; fuzzy: Set<bigint>; joinedLo: bigint; joinedHi: bigint } {
    const seqs = new Set<bigint>();
    const fuzzy = new Set<bigint>();
    let joinedLo = 0n;
    let joinedHi = 0n;
    const racingBefore = (i: number, racing: Set<string> | undefined) => {
      let n = 0n;
      for (let j = i - 1; j >= 0 && racing && !msgs[j]!.note && racing.has(msgs[j]!.clientMsgId); j--, n++) fuzzy.add(msgs[j]!.seq);
      return n;
    };
    let member = initialMembers.get(chan)!.has(u);
    const changes = chan.changes.filter((c) => c.user === u);
    let next = 0;
    for (const [i, m] of msgs.entries()) {
      const about = m.note && m.note.userIds.includes(u.test.userId);
      if (about && m.note!.kind === ChannelNoteKind.MEMBERS_ADDED) {
        assert.ok(changes[next]?.added === true, `channel ${chan.id}: a note adds ${u.name} at seq ${m.seq} that this run did not`);
        racingBefore(i, changes[next]!.racing);
        next++;
        member = true;
        // The note of their add is where their unread starts (its writer moves their join point to it), racing sends before it or not.
        joinedHi = m.seq;
        joinedLo = m.seq;
      } else if (about && m.note!.kind === ChannelNoteKind.MEMBER_REMOVED) {
        assert.ok(changes[next]?.added === false, `channel ${chan.id}: a note removes ${u.name} at seq ${m.seq} that this run did not`);
        racingBefore(i, changes[next]!.racing);
        next++;
        member = false;
      }
      if (member) seqs.add(m.seq);
    }
    assert.equal(next, changes.length, `channel ${chan.id}: notes of ${u.name}'s adds and removals`);
    return { seqs, fuzzy, joinedLo, joinedHi };
  }
  async function check(final: boolean): Promise<void> {
    if (final) for (const d of allDevs()) if (!d.connected) await connect(d);
    await settleSends();
    if (final) assert.deepEqual([...sends.values()].filter((s) => s.pending).map((s) => s.key), [], "every send acked in the end");

    const truth = new Map<Chan, Message[]>();
    const bySeq = new Map<Chan, Map<bigint, Message>>();
    for (const chan of chans) {
      const msgs = await history(chan);
      truth.set(chan, msgs);
      bySeq.set(chan, new Map(msgs.map((m) => [m.seq, m])));
      assert.deepEqual(msgs.map((m) => m.seq), msgs.map((_, i) => BigInt(i + 1)), `channel ${chan.id}: history's seqs are gap-free from 1`);
      assert.equal(new Set(msgs.map((m) => m.messageId)).size, msgs.length, `channel ${chan.id}: a message id twice in history`);
      const keys = new Map<string, Message>();
      for (const m of msgs) {
        if (m.note) continue;
        const k = `${m.senderDeviceId}/${m.clientMsgId}`;
        assert.ok(!keys.has(k), `channel ${chan.id}: ${m.clientMsgId} stored twice (seqs ${keys.get(k)?.seq} and ${m.seq})`);
        keys.set(k, m);
        const s = sends.get(m.clientMsgId);
        assert.ok(s && s.chan === chan, `channel ${chan.id}: seq ${m.seq} (${m.clientMsgId}) was never sent there`);
        assert.equal(m.senderDeviceId, s.dev.deviceId, `${m.clientMsgId} stored as another device's`);
        if (s.ackIds.size > 0) assert.ok(s.ackIds.has(m.messageId), `${m.clientMsgId} was acked as ${[...s.ackIds]} but stored as ${m.messageId}`);
      }
      for (const s of sends.values()) {
        if (s.chan === chan && s.refused) {
          assert.ok(!msgs.some((m) => !m.note && m.clientMsgId === s.key), `channel ${chan.id}: ${s.key} was refused NOT_A_MEMBER but stored`);
          const raced = chan.changes.some((c) => !c.added && c.user === s.dev.user && c.racing?.has(s.key));
          assert.ok(!s.refused.memberThen || raced, `channel ${chan.id}: ${s.key} by member ${s.dev.user.name} refused NOT_A_MEMBER`);
        }
        if (s.chan === chan && s.targetGone) {
          assert.ok(!msgs.some((m) => !m.note && m.clientMsgId === s.key), `channel ${chan.id}: ${s.key} was refused NOT_FOUND but stored`);
          assert.ok(states.get(stateKey(chan, s.replyTo!))?.deleted, `channel ${chan.id}: ${s.key}, a reply to ${s.replyTo}, refused NOT_FOUND but its target stands`);
        }
        if (s.chan !== chan || s.ackIds.size === 0) continue;
        assert.ok(msgs.some((m) => !m.note && m.clientMsgId === s.key), `channel ${chan.id}: ${s.key} was acked (${[...s.ackIds]}) but is not in history: lost`);
      }
      // History shows each message as the acked changes left it.
      for (const m of msgs) {
        if (m.note) continue;
        const s = sends.get(m.clientMsgId)!;
        const want = states.get(stateKey(chan, m.seq)) ?? { text: s.text, edited: false, deleted: false, reactions: new Map<bigint, string>() };
        const what = `channel ${chan.id} seq ${m.seq} (${m.clientMsgId}) in history`;
        assert.equal(m.replyToSeq, s.replyTo ?? 0n, `${what}: answers`);
        assert.equal(m.deleted, want.deleted, `${what}: deleted`);
        assert.equal(m.text, want.deleted ? "" : want.text, `${what}: text`);
        if (!want.deleted) assert.equal(m.editedAt !== undefined, want.edited, `${what}: edited`);
        assert.deepEqual(reactionList(m.reactions), want.deleted ? [] : [...want.reactions].map(([u, e]) => `${e}:${u}`).sort(), `${what}: reactions`);
      }
    }

    // A deleted text survives nowhere: not in any inbox's copy of the message or of its edits, a former member's included.
    for (const u of users) {
      for (let after = 0n; ; ) {
        const page = await api(u).messages.syncInbox({ afterInboxSeq: after, limit: 1000 });
        for (const e of page.entries) {
          const m = e.message!;
          const chan = chans.find((c) => c.id === m.channelId);
          if (!chan || m.note || m.reaction || (m.targetSeq !== 0n && m.deleted)) continue;
          const target = bySeq.get(chan)!.get(m.targetSeq || m.seq);
          if (target?.deleted) assert.equal(m.text, "", `${u.name}'s inbox seq ${e.inboxSeq}: ${m.targetSeq ? `an edit of ${chan.id}/${m.targetSeq}` : `${chan.id}/${m.seq}`}, deleted, keeps its text`);
        }
        if (!page.hasMore || page.entries.length === 0) break;
        after = page.entries.at(-1)!.inboxSeq;
      }
    }

    for (const u of users) {
      // What the user's inbox must hold: per channel, the seqs over their membership.
      const expected = new Map<bigint, ReturnType<typeof membershipSeqs>>();
      let least = 0;
      for (const chan of chans) {
        const m = membershipSeqs(chan, truth.get(chan)!, u);
        expected.set(chan.id, m);
        least += [...m.seqs].filter((x) => !m.fuzzy.has(x)).length;
      }
      const connected = u.devs.filter((d) => d.connected);
      for (const d of connected) {
        // Caught up: at least what it must hold, and up to the head the server gives a new session.
        await waitFor(() => d.device.entries.length >= least, `${d.name} to hold its ${least} inbox entries or more (holds ${d.device.entries.length})`);
        const head = (await api(u).messages.syncInbox({ afterInboxSeq: 0n, limit: 1 })).headInboxSeq;
        await waitFor(() => d.device.cursor >= head, `${d.name} to reach its inbox head ${head} (at ${d.device.cursor})`);
        const entries = d.device.entries;
        assert.deepEqual(entries.map((e) => e.inboxSeq), entries.map((_, i) => BigInt(i + 1)), `${d.name}: inbox seqs gap-free from 1, each once`);
        assert.equal(new Set(entries.map((e) => e.message!.messageId)).size, entries.length, `${d.name}: a message twice`);
        if (!d.askedSync) {
          const session = d.device.received.slice(d.sessionFrom);
          assert.equal(new Set(session).size, session.length, `${d.name}: an inbox seq sent twice in one session`);
        }
        const got = new Map<bigint, bigint[]>();
        for (const e of entries) {
          const m = e.message!;
          // A change (edit, delete, reaction) takes no seq: checked below, applied to its target.
          if (m.targetSeq !== 0n) continue;
          const chan = chans.find((c) => c.id === m.channelId);
          assert.ok(chan, `${d.name}: an entry of channel ${m.channelId}, not one of this run's`);
          assert.equal(m.messageId, bySeq.get(chan)!.get(m.seq)?.messageId, `${d.name}: channel ${m.channelId} seq ${m.seq} is another message than history's`);
          got.set(m.channelId, [...(got.get(m.channelId) ?? []), m.seq]);
        }
        for (const chan of chans) {
          const { seqs, fuzzy } = expected.get(chan.id)!;
          const held = got.get(chan.id) ?? [];
          const what = `${d.name} (${u.name}): channel ${chan.id}`;
          assert.deepEqual(held, [...held].sort((a, b) => (a < b ? -1 : 1)), `${what}: messages in channel order`);
          const sure = (xs: Iterable<bigint>) => [...xs].filter((x) => !fuzzy.has(x)).sort((a, b) => (a < b ? -1 : 1));
          assert.deepEqual(sure(held), sure(seqs), `${what}: the messages of the membership, each once (racing sends aside: ${sure(fuzzy)})`);
          // Racing sends land on either side of a change, but a member never misses one between two they got.
          for (let i = 1; i < held.length; i++) {
            const between = msgsBetween(held[i - 1]!, held[i]!);
            assert.ok(between.length === 0 || between.some((x) => !seqs.has(x) && !fuzzy.has(x)), `${what}: a gap ${between.join(",")} between seqs ${held[i - 1]} and ${held[i]}`);
          }
          // Since the user's latest join every change reached them: the device shows each message as history does.
          if (!chan.members.has(u)) continue;
          const since = expected.get(chan.id)!.joinedHi;
          const shown = new Map(d.device.shown(chan.id).map((x) => [x.seq, x]));
          const reactions = d.device.reactionsShown(chan.id);
          for (const seq of seqs) {
            const m = bySeq.get(chan)!.get(seq)!;
            if (seq <= since || fuzzy.has(seq) || m.note) continue;
            const x = shown.get(seq);
            assert.ok(x, `${what}: seq ${seq} not shown`);
            assert.equal(x.deleted, m.deleted, `${what}: seq ${seq} deleted on the device, not in history, or the other way`);
            if (m.deleted) continue;
            assert.equal(x.text, m.text, `${what}: seq ${seq}'s text on the device`);
            assert.equal(x.edited, m.editedAt !== undefined, `${what}: seq ${seq} edited on the device`);
            assert.deepEqual(reactions.get(seq) ?? [], reactionList(m.reactions), `${what}: seq ${seq}'s reactions on the device`);
          }
        }
      }
      // Every device of a user holds the one inbox.
      for (const d of connected.slice(1)) {
        assert.deepEqual(d.device.entries.map((e) => e.message!.messageId), connected[0]!.device.entries.map((e) => e.message!.messageId), `${d.name} and ${connected[0]!.name} hold different inboxes`);
      }

      // The channel list: exactly the channels the user is in, with unread counts as the reads and sends say.
      const listed = (await api(u).channels.listChannels({ limit: 200 })).channels;
      assert.deepEqual(listed.map((c) => c.channelId).sort(), chansOf(u).map((c) => c.id).sort(), `${u.name}'s channel list`);
      for (const c of listed) {
        const chan = chans.find((x) => x.id === c.channelId)!;
        const msgs = truth.get(chan)!;
        const last = msgs.at(-1);
        assert.equal(c.lastSeq, last?.seq ?? 0n, `${u.name}: channel ${chan.id}'s last seq`);
        const unread = expectedUnread(u, chan, msgs);
        assert.ok(unread.includes(c.unreadCount), `${u.name}: channel ${chan.id}'s unread count ${c.unreadCount}, not ${unread.join(" or ")} (read ${reads.get(u)!.get(chan) ?? 0n}, last ${last?.seq})`);
      }
    }
  }

  const reactionList = (rs: readonly { userId: bigint; emoji: string }[]) => rs.map((r) => `${r.emoji}:${r.userId}`).sort();

  function msgsBetween(a: bigint, b: bigint): bigint[] {
    const out: bigint[] = [];
    for (let x = a + 1n; x < b; x++) out.push(x);
    return out;
  }

  /**
   * As ListChannels counts: after the read position (at least the note of the latest join),
   * past the user's own newest of the last 100; one count per seq the join may have started at.
   */
  function expectedUnread(u: User, chan: Chan, msgs: Message[]): bigint[] {
    const last = msgs.at(-1);
    if (!last || last.senderUserId === u.test.userId) return [0n];
    const { joinedLo, joinedHi } = membershipSeqs(chan, msgs, u);
    const read = reads.get(u)!.get(chan) ?? 0n;
    const out = new Set<bigint>();
    for (let joinedSeq = joinedLo; joinedSeq <= joinedHi; joinedSeq++) {
      let from = read > joinedSeq ? read : joinedSeq;
      if (last.seq > from + 1n) {
        const windowStart = last.seq - 100n;
        const lo = from + 1n > windowStart ? from + 1n : windowStart;
        for (const m of msgs) if (m.seq >= lo && m.seq < last.seq && m.senderUserId === u.test.userId && m.seq > from) from = m.seq;
      }
      out.add(last.seq > from ? last.seq - from : 0n);
    }
    return [...out];
  }

  it("keeps every device's view equal to the model", async () => {
    chatd = await startChatd({ env });
    dataDir = chatd.dataDir;
    const userCount = 4 + Math.floor(rnd() * 2);
    for (let i = 0; i < userCount; i++) {
      const test = await signUp(chatd.httpUrl, `inv${i}`);
      const u: User = { test, name: `u${i}`, devs: [] };
      const deviceCount = 1 + Math.floor(rnd() * 3);
      for (let j = 1; j < deviceCount; j++) await addDevice(chatd.httpUrl, test);
      for (const [j, cred] of test.devices.entries()) {
        u.devs.push({ user: u, name: `u${i}d${j}`, deviceId: cred.deviceId, token: cred.token, device: new TestDevice(chatd.wsUrl, cred.token), connected: false, session: 0, sessionFrom: 0, askedSync: false });
      }
      users.push(u);
      reads.set(u, new Map());
    }
    for (let i = 0; i < users.length; i++) {
      for (let j = i + 1; j < users.length; j++) {
        if (!chance(0.5)) continue;
        const res = await api(users[i]!).channels.openDirect({ userId: users[j]!.test.userId });
        const chan: Chan = { id: res.channel!.channelId, kind: "direct", owner: users[i]!, members: new Set([users[i]!, users[j]!]), changes: [] };
        chans.push(chan);
        initialMembers.set(chan, new Set(chan.members));
      }
    }
    const groupCount = 1 + Math.floor(rnd() * 2);
    for (let g = 0; g < groupCount; g++) {
      const owner = pick(users);
      const others = users.filter((u) => u !== owner && chance(0.6));
      const res = await api(owner).channels.createGroup({ title: `g${g}`, memberUserIds: others.map((u) => u.test.userId) });
      const chan: Chan = { id: res.channel!.channelId, kind: "group", owner, members: new Set([owner, ...others]), changes: [] };
      chans.push(chan);
      initialMembers.set(chan, new Set(chan.members));
    }
    for (const d of allDevs()) await connect(d);

    for (let step = 1; step <= STEPS; step++) {
      const r = rnd();
      if (r < 0.35) stepSend();
      else if (r < 0.47) await stepChange();
      else if (r < 0.52) await stepResendOld();
      else if (r < 0.6) await stepDisconnect();
      else if (r < 0.72) await stepReconnect();
      else if (r < 0.8) await stepMembership();
      else if (r < 0.92) await stepRead();
      else if (r < 0.935) await stepRestart();
      // else: let the sends in flight go on
      else if (inFlight.size > 0) await pick([...inFlight]);
      if (failures.length > 0) throw failures[0];
      for (const d of allDevs()) {
        if (d.connected && d.device.closeCode !== undefined) throw new Violation(`${d.name} was closed by chatd: ${d.device.closeCode} ${d.device.closeReason}`);
      }
      if (step % CHECK_EVERY === 0) {
        note(`checkpoint at step ${step}`);
        await check(false);
      }
    }
    note("final check");
    await check(true);
    if (process.env.INVARIANT_STEPS) {
      const acked = [...sends.values()].filter((s) => s.ackIds.size > 0).length;
      const changes = chans.reduce((n, c) => n + c.changes.length, 0);
      console.log(`seed ${SEED}: ${STEPS} steps, ${acked} messages acked in ${chans.length} channels, ${changes} membership changes, chatd stopped ${restarts.stopped} and killed ${restarts.killed} times; changes: ${[...outcomes].map(([k, n]) => `${k} ${n}`).join(", ")}`);
    }
  });
});
