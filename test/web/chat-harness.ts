import { clone, create, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { PageDirection } from "../../gen/es/chat/v1/messages_pb.js";
import { ChannelEventKind } from "../../gen/es/chat/v1/session_pb.js";
import { ChannelKind, ChannelSchema, MessageSchema, UserSchema, type Channel, type Member, type Message, type Presence } from "../../gen/es/chat/v1/types_pb.js";
import { waitFor } from "../support/wait.js";
import { fakeBrowser, ScriptedSocket, settle, type FakeBrowser, type FakeElement } from "./fake-browser.js";

/**
 * The web client's ChatApp in Node, against a scripted server: Connect calls
 * answered from the server's state as it is when the call is made (a held
 * call answers later with what it read then, as a slow call does), and the
 * realtime session on a ScriptedSocket the test pushes frames into.
 */

export const ME = 1n;
export const PEER = 2n;

type Req = Record<string, unknown>;

export class FakeServer {
  readonly channels = new Map<string, Channel>();
  readonly history = new Map<string, Message[]>();
  readonly calls: { method: string; req: Req }[] = [];
  /** ListMembers' answer by channel (none when not set). */
  readonly members = new Map<string, Member[]>();
  /** GetPresence's answer by user id (users not set are left out). */
  readonly presence = new Map<string, Presence>();
  private readonly held = new Map<string, Promise<void>>();
  private readonly failing = new Set<string>();
  private readonly handlers: Record<string, (req: Req) => unknown> = {
    getMe: () => ({ user: create(UserSchema, { userId: ME, username: "me", displayName: "Me" }) }),
    getPresenceSettings: () => ({ settings: { visibility: 1 } }),
    listBlockedUsers: () => ({ blockedUsers: [] }),
    getUsers: (req) => ({ users: (req.userIds as bigint[]).map((userId) => create(UserSchema, { userId, username: `u${userId}`, displayName: `User ${userId}` })) }),
    getPresence: (req) => ({ presences: (req.userIds as bigint[]).flatMap((id) => this.presence.get(String(id)) ?? []) }),
    listMembers: (req) => ({ members: this.members.get(String(req.channelId)) ?? [] }),
    markRead: () => ({}),
    markUnread: (req) => {
      const c = this.channels.get(String(req.channelId));
      if (!c) throw new Error("not a member");
      c.markedUnread = Boolean(req.unread);
      return { channel: clone(ChannelSchema, c) };
    },
    listChannels: (req) => ({
      channels: [...this.channels.values()].filter((c) => c.archived === Boolean(req.archived)).map((c) => clone(ChannelSchema, c)),
      nextPageToken: "",
    }),
    describeChannel: (req) => {
      const c = this.channels.get(String(req.channelId));
      if (!c) throw new Error("not a member");
      return { channel: clone(ChannelSchema, c) };
    },
    listMessages: (req) => this.page(req.channelId as bigint, req.anchorSeq as bigint, req.direction as PageDirection, Number(req.limit) || 50),
  };

  /** Calls to `method` from now on read the state at once and answer when released. */
  hold(method: string): () => void {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    this.held.set(method, gate);
    return () => {
      this.held.delete(method);
      release();
    };
  }

  /** Calls to `method` from now on fail, until the returned function is called. */
  fail(method: string): () => void {
    this.failing.add(method);
    return () => this.failing.delete(method);
  }

  /** How many calls to `method` were made. */
  count(method: string): number {
    return this.calls.filter((c) => c.method === method).length;
  }

  async call(method: string, req: Req): Promise<unknown> {
    this.calls.push({ method, req });
    const held = this.held.get(method);
    let answer: unknown;
    let failure: unknown;
    try {
      if (this.failing.has(method)) throw new Error("unavailable");
      answer = this.handlers[method]?.(req) ?? {};
    } catch (err) {
      failure = err;
    }
    if (held) await held;
    if (failure) throw failure;
    return answer;
  }

  api(): unknown {
    const services = ["auth", "users", "channels", "messages", "presence", "push"];
    return Object.fromEntries(services.map((s) => [s, new Proxy({}, { get: (_t, method) => (req: Req) => this.call(String(method), req ?? {}) })]));
  }

  /** A chat I am in, with `messages` in its history (seq 1..messages). */
  addChat(channelId: bigint, fields: MessageInitShape<typeof ChannelSchema> = {}, messages = 0): Channel {
    const history = Array.from({ length: messages }, (_, i) => message(channelId, BigInt(i + 1)));
    this.history.set(String(channelId), history);
    const last = history.at(-1);
    const c = create(ChannelSchema, {
      channelId,
      kind: ChannelKind.GROUP,
      title: `Chat ${channelId}`,
      memberCount: 2,
      createdAt: timestampFromMs(Date.now() - 3_600_000),
      lastSeq: last?.seq ?? 0n,
      readSeq: last?.seq ?? 0n,
      lastMessage: last,
      ...fields,
    });
    this.channels.set(String(channelId), c);
    return c;
  }

  /** A new message in the chat's history (and its record on the server); the caller delivers it. */
  post(channelId: bigint, text?: string): Message {
    const history = this.history.get(String(channelId))!;
    const m = message(channelId, (history.at(-1)?.seq ?? 0n) + 1n, text);
    history.push(m);
    const c = this.channels.get(String(channelId));
    if (c) {
      c.lastSeq = m.seq;
      c.lastMessage = m;
      c.unreadCount += 1n;
    }
    return m;
  }

  private page(channelId: bigint, anchor: bigint, direction: PageDirection, limit: number) {
    const all = this.history.get(String(channelId)) ?? [];
    if (direction === PageDirection.FORWARD) {
      const after = all.filter((m) => m.seq > anchor);
      return { messages: after.slice(0, limit).map((m) => clone(MessageSchema, m)), hasMore: after.length > limit };
    }
    const before = all.filter((m) => anchor === 0n || m.seq < anchor);
    // Newest first, as the server answers a BACKWARD page.
    return { messages: before.slice(-limit).reverse().map((m) => clone(MessageSchema, m)), hasMore: before.length > limit };
  }
}

export function message(channelId: bigint, seq: bigint, text = `message ${seq}`, senderUserId = PEER): Message {
  return create(MessageSchema, { channelId, seq, messageId: channelId * 1_000_000n + seq, senderUserId, senderDeviceId: 22n, text, sentAt: timestampFromMs(Date.now() - 60_000 + Number(seq)) });
}

export interface Running {
  server: FakeServer;
  browser: FakeBrowser;
  app: { start(): Promise<void>; destroy(): void };
  /** The socket of the current session. */
  socket(): ScriptedSocket;
  /** Delivers `messages` live, one frame each, as the next inbox entries. */
  deliver(...messages: Message[]): void;
  /** Delivers `messages` as one sync page (a backlog), outside a catch-up. */
  deliverPage(messages: Message[]): void;
  /** The inbox's newest entry so far: entries delivered take the seqs after it. */
  inboxSeq: bigint;
  /** Welcomes the current socket, the device's cursor where the deliveries left it; `head` is the inbox's newest entry. */
  welcome(head?: bigint): void;
  /** A channel event of the chat as the server now has it. */
  channelEvent(kind: ChannelEventKind, channelId: bigint, userId?: bigint): void;
  /** The connection drops and comes back: the new session is welcomed with nothing to catch up (`welcome` false: not yet). */
  reconnect(welcome?: boolean): Promise<ScriptedSocket>;
  /** The chat list as shown: id, name, unread badge, last message line. */
  rows(): { id: string; name: string; unread: string; marked: boolean; last: string }[];
  /** The seqs of the open chat's messages as shown, oldest first. */
  shownSeqs(): bigint[];
  scroller(): FakeElement;
  stop(): void;
}

/**
 * For a describe block of app tests: the fake browser, installed only while
 * they run (the other suites in this process must not think they are in a
 * browser), and `start`, which runs the app against a server and stops it
 * after the test. `speed`: see fakeBrowser.
 */
export function appSuite(options: { speed?: number } = {}): { browser: FakeBrowser; start(server: FakeServer): Promise<Running> } {
  const browser = fakeBrowser(options);
  let running: Running | undefined;
  before(() => browser.install());
  after(() => browser.uninstall());
  afterEach(() => {
    running?.stop();
    running = undefined;
  });
  return { browser, start: async (server) => (running = await runApp(browser, server)) };
}

/** Starts a ChatApp on a fake browser (installed already) against `server`, welcomed, with its chat list loaded. */
export async function runApp(browser: FakeBrowser, server: FakeServer): Promise<Running> {
  const { ChatApp } = await import("../../web/src/app.js");
  browser.reset();
  const auth = {
    userId: ME,
    deviceId: 11n,
    current: { deviceId: "11", userId: "1", accessToken: "t", username: "me", displayName: "Me" },
    accessToken: async () => "t",
    refresh: async () => auth.current,
    updateProfile() {},
    clear() {},
  };
  const sockets = ScriptedSocket.all.length;
  const app = new ChatApp(browser.root as never, auth as never, server.api() as never, { signedOut() {} });
  let inboxSeq = 0n;
  const socket = () => ScriptedSocket.all.at(-1)!;
  const welcome = (head = inboxSeq) => socket().push({ kind: { case: "welcome", value: { userId: ME, deviceId: 11n, deviceCursor: inboxSeq, headInboxSeq: head, heartbeatIntervalMs: 60_000 } } });
  await app.start();
  await waitFor(() => ScriptedSocket.all.length > sockets, "the session's socket");
  welcome();
  await settle();
  const q = (el: FakeElement, sel: string) => el.querySelector(sel)?.textContent ?? "";
  return {
    server,
    browser,
    app,
    socket,
    get inboxSeq() {
      return inboxSeq;
    },
    set inboxSeq(v: bigint) {
      inboxSeq = v;
    },
    welcome,
    deliver: (...messages) => {
      for (const message of messages) socket().push({ kind: { case: "message", value: { entry: { inboxSeq: ++inboxSeq, message } } } });
    },
    deliverPage: (messages) => socket().push({ kind: { case: "syncBatch", value: { entries: messages.map((message) => ({ inboxSeq: ++inboxSeq, message })), headInboxSeq: inboxSeq } } }),
    channelEvent: (kind, channelId, userId = ME) => {
      const channel = server.channels.get(String(channelId)) ?? create(ChannelSchema, { channelId });
      socket().push({ kind: { case: "channel", value: { kind, channel, userId } } });
    },
    reconnect: async (andWelcome = true) => {
      const before = ScriptedSocket.all.length;
      socket().drop();
      await waitFor(() => ScriptedSocket.all.length > before, "the reconnect", 5_000);
      if (andWelcome) welcome();
      return socket();
    },
    rows: () =>
      browser.root.querySelectorAll("[data-testid=channel]").map((el) => ({
        id: el.getAttribute("data-channel-id")!,
        name: el.getAttribute("data-name")!,
        unread: q(el, "[data-testid=unread]"),
        marked: el.querySelector("[data-testid=marked-unread]") !== null,
        last: q(el, "[data-testid=channel-last]"),
      })),
    shownSeqs: () => browser.root.querySelectorAll("[data-testid=message]").map((el) => BigInt(el.getAttribute("data-seq")!)),
    scroller: () => browser.root.querySelector(".scroller")!,
    stop: () => app.destroy(),
  };
}
