/**
 * Test harness for the api: a real connect-node server on a random port, the
 * sqlite adapters on a temp database, and in-test stand-ins for the parts
 * that are not the api's (a SessionDirectory that records, a submitter that
 * appends straight to the log and inboxes). Not a test file itself.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { AddressInfo } from "node:net";
import type { DescService } from "@bufbuild/protobuf";
import { ConnectError, createClient, type Client, type ConnectRouter, type Interceptor } from "@connectrpc/connect";
import { connectNodeAdapter, createConnectTransport } from "@connectrpc/connect-node";
import { AuthService } from "../../gen/es/chat/v1/auth_pb.js";
import { ChannelService } from "../../gen/es/chat/v1/channels_pb.js";
import { MessageService } from "../../gen/es/chat/v1/messages_pb.js";
import { PresenceService } from "../../gen/es/chat/v1/presence_pb.js";
import { PushService } from "../../gen/es/chat/v1/push_pb.js";
import type { ServerFrame } from "../../gen/es/chat/v1/session_pb.js";
import { UserService } from "../../gen/es/chat/v1/users_pb.js";
import { LIGHT_PASSWORD_PARAMS, PasswordHasher } from "../auth/passwords.js";
import { generateKeys, TokenSigner, TokenVerifier } from "../auth/tokens.js";
import type { SessionDirectory } from "../delivery/port.js";
import { Snowflake } from "../ids/snowflake.js";
import { joinersOf } from "../channels/joins.js";
import { noteMessage, type MessageSubmitter } from "../messages/submit.js";
import { ChatError } from "../model/errors.js";
import type { Id, NewMessage } from "../model/types.js";
import { presenceFrame } from "../presence/tracker.js";
import { openSqliteStorage, type SqliteStorage } from "../storage/sqlite/index.js";
import type { PresenceSource } from "./deps.js";
import { ERROR_CODE_HEADER } from "./errors.js";
import { clientAddressValues, registerPublicApi, type ApiDeps } from "./router.js";
import { validateSend } from "../chatserver/validate.js";

/** The testkit's api trusts this header for the client address, so tests can be many clients. */
export const TEST_CLIENT_IP_HEADER = "x-forwarded-for";

export class RecordingSessions implements SessionDirectory {
  pushes: { userIds: Id[]; frame: ServerFrame }[] = [];
  closed: { userId: Id; deviceId: Id; code: number; reason: string }[] = [];
  online = new Set<Id>();

  async pushToUsers(userIds: readonly Id[], frame: ServerFrame): Promise<void> {
    this.pushes.push({ userIds: [...userIds], frame });
  }
  async closeDevice(userId: Id, deviceId: Id, code: number, reason: string): Promise<void> {
    this.closed.push({ userId, deviceId, code, reason });
  }
  async onlineUsers(userIds: readonly Id[]): Promise<Set<Id>> {
    return new Set(userIds.filter((id) => this.online.has(id)));
  }
  framesOf(kind: ServerFrame["kind"]["case"]) {
    return this.pushes.filter((p) => p.frame.kind.case === kind);
  }
}

/** A SessionDirectory whose store is away (the routing table in Redis, say): every call fails. */
export class UnreachableSessions implements SessionDirectory {
  calls = 0;
  private fail(): Promise<never> {
    this.calls++;
    return Promise.reject(new Error("Connection is closed."));
  }
  pushToUsers = () => this.fail();
  closeDevice = () => this.fail();
  onlineUsers = () => this.fail();
}

/** Appends straight to the log and every member's inbox: the pipeline's job, minus the queue. */
function directSubmitter(storage: SqliteStorage, ids: Snowflake, now: () => number): MessageSubmitter {
  const store = async (m: NewMessage) => {
    const { message, duplicate } = await storage.messages.append(m);
    if (!duplicate) {
      for (const member of await storage.channels.listMembers(m.channelId)) await storage.inbox.append(member.userId, message);
      // As the Sequencer and chatd's writer: the note of an add or a join is where the joiners' unread starts.
      await storage.channels.markJoined(m.channelId, joinersOf(message), message.seq);
    }
    return { messageId: message.messageId, duplicate };
  };
  return {
    async submit(sender, cmd) {
      // The checks every real submitter makes first (ids, seqs, text, client_msg_id).
      validateSend(cmd);
      if (!(await storage.channels.getMember(cmd.channelId, sender.userId))) {
        throw new ChatError("not_a_member", "not a member of this channel");
      }
      return store({
        messageId: ids.next(),
        channelId: cmd.channelId,
        senderUserId: sender.userId,
        senderDeviceId: sender.deviceId,
        clientMsgId: cmd.clientMsgId,
        text: cmd.text,
        sentAtMs: now(),
      });
    },
    note: (sender, channelId, note) => store(noteMessage(ids.next(), sender, channelId, note, now())),
  };
}

export interface Clients {
  auth: Client<typeof AuthService>;
  users: Client<typeof UserService>;
  channels: Client<typeof ChannelService>;
  messages: Client<typeof MessageService>;
  presence: Client<typeof PresenceService>;
  push: Client<typeof PushService>;
}

export interface TestUser {
  userId: Id;
  deviceId: Id;
  accessToken: string;
  refreshToken: string;
  c: Clients;
}

/**
 * Presence where every user is in one state. What it tells goes out through
 * the sessions of the TestApi it is given to, where tests read it.
 */
export class FixedPresence implements PresenceSource {
  directory?: Pick<SessionDirectory, "pushToUsers">;
  constructor(private readonly state: { online: boolean; lastSeenAtMs?: number }) {}

  async getPresence(userIds: Id[]) {
    return userIds.map((userId) => ({ userId, ...this.state }));
  }

  async tellLatest(userId: Id, to: readonly Id[]): Promise<void> {
    if (to.length > 0) await this.directory?.pushToUsers(to, presenceFrame({ userId, ...this.state }));
  }

  async tellGone(userId: Id, to: readonly Id[]): Promise<void> {
    if (to.length > 0) await this.directory?.pushToUsers(to, presenceFrame({ userId, online: false }));
  }
}

export class TestApi {
  /** The clock the api and its tokens read; tests move it. */
  clock = { ms: Date.UTC(2026, 5, 1) };
  readonly sessions = new RecordingSessions();
  readonly storage: SqliteStorage;
  private readonly dir: string;
  private server!: Server;
  private url = "";
  private seq = 0;

  private constructor(overrides: Partial<ApiDeps>) {
    this.dir = mkdtempSync(join(tmpdir(), "chat-api-test-"));
    const now = () => this.clock.ms;
    this.storage = openSqliteStorage(join(this.dir, "chat.db"), { now });
    const keys = generateKeys();
    const ids = new Snowflake(1);
    this.deps = {
      accounts: this.storage.accounts,
      channels: this.storage.channels,
      log: this.storage.messages,
      inbox: this.storage.inbox,
      submitter: directSubmitter(this.storage, ids, now),
      sessions: this.sessions,
      ids,
      signer: new TokenSigner(keys, { now }),
      verifier: new TokenVerifier(keys.publicKey, { now }),
      now,
      passwords: new PasswordHasher(LIGHT_PASSWORD_PARAMS),
      ...overrides,
    };
    if (overrides.presence instanceof FixedPresence) overrides.presence.directory = this.sessions;
  }

  readonly deps: ApiDeps;

  /** Clients without an access token. */
  get anon(): Clients {
    return this.clients();
  }

  static async start(overrides: Partial<ApiDeps> = {}): Promise<TestApi> {
    const api = new TestApi(overrides);
    const routes = (r: ConnectRouter) => registerPublicApi(r, api.deps);
    api.server = createServer(connectNodeAdapter({ routes, contextValues: clientAddressValues(TEST_CLIENT_IP_HEADER) }));
    await new Promise<void>((resolve) => api.server.listen(0, "127.0.0.1", resolve));
    api.url = `http://127.0.0.1:${(api.server.address() as AddressInfo).port}`;
    return api;
  }

  /** `clientIp` poses as that client address (through TEST_CLIENT_IP_HEADER). */
  clients(accessToken?: string, clientIp?: string): Clients {
    const auth: Interceptor = (next) => (req) => {
      if (accessToken) req.header.set("authorization", `Bearer ${accessToken}`);
      if (clientIp) req.header.set(TEST_CLIENT_IP_HEADER, clientIp);
      return next(req);
    };
    const transport = createConnectTransport({ baseUrl: this.url, httpVersion: "1.1", interceptors: [auth] });
    const c = <T extends DescService>(s: T) => createClient(s, transport);
    return {
      auth: c(AuthService),
      users: c(UserService),
      channels: c(ChannelService),
      messages: c(MessageService),
      presence: c(PresenceService),
      push: c(PushService),
    };
  }

  async signUp(name = `user${++this.seq}`, password = "correct horse"): Promise<TestUser> {
    const res = await this.anon.auth.signUp({ username: name, password, displayName: name, device: { name: "test" } });
    const cr = res.credentials!;
    return { userId: cr.userId, deviceId: cr.deviceId, accessToken: cr.accessToken, refreshToken: cr.refreshToken, c: this.clients(cr.accessToken) };
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.storage.close();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Runs fn expecting a ConnectError; returns it for further checks. */
export async function rpcError(fn: () => Promise<unknown>): Promise<ConnectError & { chatCode: string | null }> {
  try {
    await fn();
  } catch (e) {
    if (!(e instanceof ConnectError)) throw e;
    return Object.assign(e, { chatCode: e.metadata.get(ERROR_CODE_HEADER) });
  }
  throw new Error("expected the call to fail");
}

/** Holds the next call of `method` until released, and says when one has arrived: a request paused at a known point. */
export function holdNext<T extends object>(target: T, method: keyof T & string) {
  const t = target as Record<string, (...args: unknown[]) => Promise<unknown>>;
  const original = t[method]!;
  let arrived!: () => void;
  let release!: () => void;
  const reached = new Promise<void>((resolve) => (arrived = resolve));
  const released = new Promise<void>((resolve) => (release = resolve));
  t[method] = async (...args) => {
    t[method] = original;
    arrived();
    await released;
    return original.apply(target, args);
  };
  return { reached, release };
}
