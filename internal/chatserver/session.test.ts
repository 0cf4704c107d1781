import assert from "node:assert/strict";
import { fromBinary, toBinary, create } from "@bufbuild/protobuf";
import { ChannelEventKind, ClientFrameSchema, ServerFrameSchema, type ServerFrame } from "../../gen/es/chat/v1/session_pb.js";
import { ErrorCode, PresenceStatus } from "../../gen/es/chat/v1/types_pb.js";
import type { Inbox } from "../messages/inbox.js";
import { ChatError } from "../model/errors.js";
import { CloseCode } from "../model/close-codes.js";
import type { Id, InboxEntry } from "../model/types.js";
import { ChatServer, type SessionLimits } from "./server.js";
import { REAUTH_GRACE_MS } from "./session.js";
import type { SessionIdentity, SessionSink } from "./port.js";
import type { SessionRoutes } from "../routing/port.js";
import Database from "better-sqlite3";
import { waitFor } from "../../test/support/wait.js";
import { inboxEntryToProto } from "../wire/messages.js";
import { encodeServerFrame } from "./codec.js";

/** An inbox that keeps only entries `kept` of a longer sequence, as one past its retention window does. */
function inboxKeeping(kept: bigint[], cursor = 0n): Inbox {
  const entry = (inboxSeq: bigint): InboxEntry => ({
    inboxSeq,
    message: { messageId: 1000n + inboxSeq, channelId: 7n, seq: inboxSeq, senderUserId: 2n, senderDeviceId: 1n, clientMsgId: `m${inboxSeq}`, text: "hi", sentAtMs: 0 },
  });
  return {
    append: () => Promise.reject(new Error("not in this test")),
    readAfter: async (_u: Id, after: bigint, limit: number) => kept.filter((s) => s > after).slice(0, limit).map(entry),
    head: async () => kept[kept.length - 1] ?? 0n,
    getCursor: async () => cursor,
    advanceCursor: async () => {},
    dropCursor: async () => {},
    emptyTexts: async () => {},
  };
}

/** Opens one session on a ChatServer over `inbox` and collects the frames it sends (and its closes). */
function openSession(
  inbox: Inbox,
  bufferedBytes: () => number = () => 0,
  limits?: Partial<SessionLimits>,
  revoked?: (userId: Id, deviceId: Id) => Promise<boolean>,
) {
  const frames: ServerFrame[] = [];
  /** Every frame sent, in order (`next` takes from `frames`). */
  const log: ServerFrame[] = [];
  const closes: number[] = [];
  const waiters: (() => void)[] = [];
  const server = new ChatServer({ serverId: "t", inbox, channels: {} as never, submitter: {} as never, limits, revoked });
  const sink: SessionSink = {
    send: (f) => {
      const decoded = fromBinary(ServerFrameSchema, f as Uint8Array);
      frames.push(decoded);
      log.push(decoded);
      for (const w of waiters.splice(0)) w();
    },
    bufferedBytes,
    close: (code) => void closes.push(code),
  };
  const handle = server.open({ userId: 1n, deviceId: 1n, tokenExpiresAtMs: Date.now() + 60_000, encoding: "proto" }, sink);
  const next = async (kind: ServerFrame["kind"]["case"]): Promise<ServerFrame> => {
    for (;;) {
      const i = frames.findIndex((f) => f.kind.case === kind);
      if (i >= 0) return frames.splice(i, 1)[0]!;
      await new Promise<void>((r) => waiters.push(r));
    }
  };
  return { server, handle, next, frames, log, closes };
}

describe("session: a new access token (Reauthenticate)", () => {
  const identityOf = (handle: unknown) => (handle as { identity: SessionIdentity }).identity;
  const raw = (ref: bigint) => toBinary(ClientFrameSchema, create(ClientFrameSchema, { ref, kind: { case: "reauthenticate", value: { accessToken: "t" } } }));

  it("moves the session's end to the new token's expiry and says so, never back", async () => {
    const { server, handle, next } = openSession(inboxKeeping([]));
    await next("welcome");
    const opened = identityOf(handle).tokenExpiresAtMs;
    handle.reauthenticate({ ref: 4n, expiresAtMs: opened + 900_000 });
    const answer = await next("reauthenticated");
    assert.equal(answer.ref, 4n);
    assert.equal(answer.kind.case === "reauthenticated" && Number(answer.kind.value.tokenExpiresAt!.seconds), Math.floor((opened + 900_000) / 1000));
    assert.equal(identityOf(handle).tokenExpiresAtMs, opened + 900_000);
    // An older token (a retry overtaken by a newer one) does not shorten the session.
    handle.reauthenticate({ ref: 5n, expiresAtMs: opened });
    await next("reauthenticated");
    assert.equal(identityOf(handle).tokenExpiresAtMs, opened + 900_000);
    server.drain();
  });

  it("answers a refused token with an error of kind 8 and keeps the session on the token it had", async () => {
    const { server, handle, next, closes } = openSession(inboxKeeping([]));
    await next("welcome");
    const opened = identityOf(handle).tokenExpiresAtMs;
    handle.reauthenticate({ ref: 6n, refused: new ChatError("token_expired", "access token expired") });
    const error = await next("error");
    assert.equal(error.ref, 6n);
    assert.equal(error.kind.case === "error" && error.kind.value.code, ErrorCode.TOKEN_EXPIRED);
    assert.equal(error.kind.case === "error" && error.kind.value.refusedKind, 8);
    assert.equal(identityOf(handle).tokenExpiresAtMs, opened);
    assert.deepStrictEqual(closes, []);
    server.drain();
  });

  it("closes with 4003 instead when the device was signed out meanwhile", async () => {
    let signedOut = false;
    const { server, handle, next, closes, frames } = openSession(inboxKeeping([]), undefined, undefined, async () => signedOut);
    await next("welcome");
    signedOut = true;
    handle.reauthenticate({ ref: 1n, expiresAtMs: Date.now() + 900_000 });
    await waitFor(() => closes.length > 0, "session closed");
    assert.deepStrictEqual(closes, [4003]);
    assert.equal(frames.filter((f) => f.kind.case === "reauthenticated").length, 0);
    server.drain();
  });

  it("answers one that came before the welcome after it, in its order", async () => {
    const { server, handle, next, log } = openSession(inboxKeeping([]));
    handle.reauthenticate({ ref: 2n, expiresAtMs: Date.now() + 900_000 });
    await next("reauthenticated");
    assert.deepStrictEqual(log.map((f) => f.kind.case).slice(0, 2), ["welcome", "reauthenticated"]);
    server.drain();
  });

  describe("the token expiring while a fresh one is being checked", () => {
    const sweep = (server: ChatServer) => (server as unknown as { sweep(): void }).sweep();
    /** Runs `body` with the wall clock `aheadMs` on (the session's token past its expiry), then puts it back. */
    async function later<T>(aheadMs: number, body: () => T | Promise<T>): Promise<T> {
      const wallNow = Date.now;
      Date.now = () => wallNow() + aheadMs;
      try {
        return await body();
      } finally {
        Date.now = wallNow;
      }
    }
    /** A revocation read that waits for `settle` from the second call on (the first is the start's). */
    function gatedRevoked() {
      let calls = 0;
      let settle!: (signedOut: boolean | Error) => void;
      const revoked = () => {
        if (++calls === 1) return Promise.resolve(false);
        return new Promise<boolean>((resolve, reject) => (settle = (v) => (v instanceof Error ? reject(v) : resolve(v))));
      };
      return { revoked, asked: () => calls >= 2, settle: (v: boolean | Error) => settle(v) };
    }

    it("does not close for expiry a session whose Reauthenticate's revocation read is under way; its new token holds once it settles", async () => {
      const gate = gatedRevoked();
      const { server, handle, next, closes } = openSession(inboxKeeping([]), undefined, undefined, gate.revoked);
      await next("welcome");
      const opened = identityOf(handle).tokenExpiresAtMs;
      handle.reauthenticate({ ref: 3n, expiresAtMs: opened + 900_000 });
      await waitFor(gate.asked, "the revocation read");
      await later(61_000, () => sweep(server));
      assert.deepStrictEqual(closes, [], "not closed while the new token is being checked");
      gate.settle(false);
      assert.equal((await next("reauthenticated")).ref, 3n);
      await later(61_000, () => sweep(server));
      assert.deepStrictEqual(closes, []);
      server.drain();
    });

    it("does not close for expiry a session still starting that holds a Reauthenticate for its welcome", async () => {
      const { inbox, state } = controlledInbox(0);
      let release!: () => void;
      state.gate = new Promise<void>((r) => (release = r));
      const { server, handle, next, closes, log } = openSession(inbox);
      const opened = identityOf(handle).tokenExpiresAtMs;
      handle.reauthenticate({ ref: 2n, expiresAtMs: opened + 900_000 });
      await later(61_000, () => sweep(server));
      assert.deepStrictEqual(closes, [], "not closed while the Reauthenticate waits for the welcome");
      await later(61_000, async () => {
        release();
        await next("reauthenticated");
        sweep(server);
      });
      assert.deepStrictEqual([closes, log.map((f) => f.kind.case).slice(0, 2)], [[], ["welcome", "reauthenticated"]]);
      server.drain();
    });

    it("closes with 4002 at once when the read fails after the expiry, and at the sweep when it is stuck past REAUTH_GRACE_MS", async () => {
      const failing = gatedRevoked();
      const a = openSession(inboxKeeping([]), undefined, undefined, failing.revoked);
      // No sweep of its own: the close must come with the failed read.
      clearInterval((a.server as unknown as { idleSweep: NodeJS.Timeout }).idleSweep);
      await a.next("welcome");
      a.handle.reauthenticate({ ref: 5n, expiresAtMs: identityOf(a.handle).tokenExpiresAtMs + 900_000 });
      await waitFor(failing.asked, "the revocation read");
      await later(61_000, async () => {
        failing.settle(new Error("store down"));
        const error = await a.next("error");
        assert.equal(error.kind.case === "error" && error.kind.value.code, ErrorCode.UNAVAILABLE);
        await waitFor(() => a.closes.length > 0, "the close");
      });
      assert.deepStrictEqual(a.closes, [4002]);
      a.server.drain();

      const stuck = gatedRevoked();
      const b = openSession(inboxKeeping([]), undefined, undefined, stuck.revoked);
      await b.next("welcome");
      b.handle.reauthenticate({ ref: 6n, expiresAtMs: identityOf(b.handle).tokenExpiresAtMs + 900_000 });
      await waitFor(stuck.asked, "the revocation read");
      await later(60_000 + REAUTH_GRACE_MS - 1_000, () => sweep(b.server));
      assert.deepStrictEqual(b.closes, [], "within the bound");
      await later(60_000 + REAUTH_GRACE_MS + 1_000, () => sweep(b.server));
      assert.deepStrictEqual(b.closes, [4002], "a stuck check keeps an expired session no longer than the bound");
      b.server.drain();
    });
  });

  it("refuses the raw frame: only a gateway, which holds the keys, can check the token", async () => {
    const { server, handle, next } = openSession(inboxKeeping([]));
    await next("welcome");
    handle.receive(raw(9n));
    const error = await next("error");
    assert.equal(error.kind.case === "error" && error.kind.value.code, ErrorCode.UNAUTHENTICATED);
    assert.equal(error.kind.case === "error" && error.kind.value.refusedKind, 8);
    server.drain();
  });
});

describe("session: frames of no known kind", () => {
  it("answers each with INVALID_FRAME and closes with 4400 after ten in a row, as undecodable ones", async () => {
    const { server, handle, next, frames, closes } = openSession(inboxKeeping([]));
    await next("welcome");
    const empty = toBinary(ClientFrameSchema, create(ClientFrameSchema, { ref: 3n }));
    for (let i = 0; i < 9; i++) handle.receive(empty);
    assert.deepStrictEqual(closes, []);
    assert.equal(frames.filter((f) => f.kind.case === "error").length, 9);
    handle.receive(empty);
    assert.deepStrictEqual(closes, [4400]);
    server.drain();
  });

  it("counts a Reauthenticate between them as a good frame: ten bad ones in a row, not in all, close a session", async () => {
    const { server, handle, next, closes } = openSession(inboxKeeping([]));
    await next("welcome");
    const empty = toBinary(ClientFrameSchema, create(ClientFrameSchema, { ref: 3n }));
    for (let i = 0; i < 9; i++) handle.receive(empty);
    handle.reauthenticate({ ref: 4n, expiresAtMs: Date.now() + 900_000 });
    await next("reauthenticated");
    for (let i = 0; i < 9; i++) handle.receive(empty);
    assert.deepStrictEqual(closes, []);
    server.drain();
  });
});

/** A proto session of `userId`'s first device on `server`, once welcomed, with the error frames it is sent. */
async function openWelcomed(server: ChatServer, userId: Id) {
  const errors: ServerFrame[] = [];
  let welcomed!: () => void;
  const welcome = new Promise<void>((r) => (welcomed = r));
  const handle = server.open({ userId, deviceId: 1n, tokenExpiresAtMs: Date.now() + 60_000, encoding: "proto" }, {
    send: (f) => {
      const frame = fromBinary(ServerFrameSchema, f as Uint8Array);
      if (frame.kind.case === "welcome") welcomed();
      if (frame.kind.case === "error") errors.push(frame);
    },
    bufferedBytes: () => 0,
    close: () => {},
  });
  await welcome;
  return { handle, errors };
}

describe("session: read and typing from a non-member", () => {
  it("answers NOT_A_MEMBER and tells nobody", async () => {
    const pushed: unknown[] = [];
    const stranger = 1n;
    const channels = {
      getMember: async () => undefined,
      getChannel: async () => ({ channelId: 7n, kind: "group", title: "g", createdAtMs: 1, createdBy: 2n }),
      listMembers: async () => [{ userId: 2n }, { userId: 3n }],
      advanceReadSeq: async () => assert.fail("a stranger's read position was written"),
    };
    const server = new ChatServer({
      serverId: "t",
      inbox: inboxKeeping([]),
      channels: channels as never,
      submitter: {} as never,
      directory: { pushToUsers: async (...a: unknown[]) => void pushed.push(a) } as never,
    });
    const { handle, errors } = await openWelcomed(server, stranger);
    handle.receive(toBinary(ClientFrameSchema, create(ClientFrameSchema, { ref: 1n, kind: { case: "read", value: { channelId: 7n, seq: 5n } } })));
    handle.receive(toBinary(ClientFrameSchema, create(ClientFrameSchema, { ref: 2n, kind: { case: "typing", value: { channelId: 7n } } })));
    await waitFor(() => errors.length === 2, "both answered");
    assert.deepStrictEqual(
      errors.map((e) => (e.kind.case === "error" ? [e.ref, e.kind.value.code] : [])),
      [[1n, ErrorCode.NOT_A_MEMBER], [2n, ErrorCode.NOT_A_MEMBER]],
    );
    assert.deepStrictEqual(pushed, []);
    server.drain();
  });
});

describe("session: a read receipt or typing hint whose fan-out fails", () => {
  /** A session of user 1 in group 7 on a server whose routing table is away: a routed directory cannot tell where the members are. */
  async function openWithRoutesAway() {
    const stored: bigint[] = [];
    const channels = {
      getMember: async () => ({ userId: 1n, readSeq: 0n }),
      getChannel: async () => ({ channelId: 7n, kind: "group", title: "g", createdAtMs: 1, createdBy: 2n }),
      listMembers: async () => [{ userId: 1n }, { userId: 2n }],
      advanceReadSeq: async (_c: Id, _u: Id, seq: bigint) => (stored.push(seq), { readSeq: seq, newest: undefined }),
    };
    const logged: string[] = [];
    const log = (_o: unknown, msg: string) => void logged.push(msg);
    const logger = { warn: log, error: log, info: () => {}, debug: log };
    const server = new ChatServer({
      serverId: "t",
      inbox: inboxKeeping([]),
      channels: channels as never,
      submitter: {} as never,
      directory: { pushToUsers: () => Promise.reject(new Error("routes could not be read")) } as never,
      logger: logger as never,
    });
    return { server, ...(await openWelcomed(server, 1n)), stored, logged };
  }

  it("is not refused once its read position is stored: it is logged, as MarkRead does, and the session goes on", async () => {
    const { server, handle, stored, logged, errors } = await openWithRoutesAway();
    handle.receive(toBinary(ClientFrameSchema, create(ClientFrameSchema, { ref: 1n, kind: { case: "read", value: { channelId: 7n, seq: 5n } } })));
    await waitFor(() => errors.length > 0 || logged.length > 0, "the failed fan-out answered or logged");
    // A retry would move nothing, and so tell the other members nothing: an error here only misleads.
    assert.deepStrictEqual([stored, errors.map((e) => e.ref)], [[5n], []]);
    server.drain();
  });

  // Each read receipt of each session during a routing store outage was a line of its own.
  it("is warned of once, not once per receipt, while the routes stay unreadable", async () => {
    const { server, handle, stored, logged } = await openWithRoutesAway();
    for (let seq = 1n; seq <= 20n; seq++) {
      handle.receive(toBinary(ClientFrameSchema, create(ClientFrameSchema, { ref: seq, kind: { case: "read", value: { channelId: 7n, seq } } })));
    }
    await waitFor(() => stored.length === 20, "every receipt's position stored");
    await waitFor(() => logged.length > 0, "the failed fan-out logged");
    await new Promise((r) => setImmediate(r));
    assert.deepStrictEqual(logged.filter((m) => m === "receipt push failed"), ["receipt push failed"]);
    server.drain();
  });

  /** The channel's newest message, another member's, far past the reader's receipts. */
  const NEWEST = { channelId: 7n, seq: 100n, senderUserId: 2n };

  /**
   * A session of user 1 in group 7 (with user 2) that sends read receipts at 1 to `receipts`, each
   * moving the position; advanceReadSeq answers NEWEST with it, a read of it counted in `newestReads`.
   */
  async function sendReceipts(receipts: bigint, deps: { log: object; directory: object; logger?: object }, newestReads = { n: 0 }) {
    let readSeq = 0n;
    const channels = {
      getMember: async () => ({ userId: 1n, readSeq }),
      getChannel: async () => ({ channelId: 7n, kind: "group", title: "g", createdAtMs: 1, createdBy: 2n }),
      listMembers: async () => [{ userId: 1n }, { userId: 2n }],
      advanceReadSeq: async (_c: Id, _u: Id, seq: bigint) => (newestReads.n++, { readSeq: (readSeq = seq), newest: NEWEST }),
    };
    const server = new ChatServer({
      serverId: "t",
      inbox: inboxKeeping([]),
      channels: channels as never,
      submitter: {} as never,
      log: deps.log as never,
      directory: deps.directory as never,
      logger: deps.logger as never,
    });
    const { handle } = await openWelcomed(server, 1n);
    for (let seq = 1n; seq <= receipts; seq++) {
      handle.receive(toBinary(ClientFrameSchema, create(ClientFrameSchema, { ref: seq, kind: { case: "read", value: { channelId: 7n, seq } } })));
    }
    return server;
  }

  // Each moved receipt of each session with the message log away was a line of its own.
  it("warns once, not once per receipt, while the reader's own newest message cannot be read", async () => {
    let reads = 0;
    const log = { lastSentBy: () => (reads++, Promise.reject(new Error("message log away"))) };
    const warned: string[] = [];
    const logger = { warn: (_o: unknown, msg: string) => void warned.push(msg), error: () => {}, info: () => {}, debug: () => {} };
    let pushes = 0;
    const server = await sendReceipts(20n, { log, directory: { pushToUsers: async () => void pushes++ }, logger });
    await waitFor(() => pushes === 20, "every receipt pushed");
    assert.ok(reads >= 2, `${reads} reads of the reader's own newest message`);
    assert.deepStrictEqual(warned.filter((m) => m === "receipt: could not read the reader's own newest message"), ["receipt: could not read the reader's own newest message"]);
    server.drain();
  });

  // advanceReadSeq reads the channel's newest message to cap the position; the server read it a second
  // time to ask whether the reader had sent after it, a storage read more per moved receipt.
  it("reads the channel's newest message once per moved receipt, in advanceReadSeq, not again", async () => {
    const newestReads = { n: 0 };
    const log = { latest: async () => (newestReads.n++, new Map([[7n, NEWEST]])), lastSentBy: async () => undefined };
    const pushed: Id[][] = [];
    const server = await sendReceipts(3n, { log, directory: { pushToUsers: async (to: Id[]) => void pushed.push(to) } }, newestReads);
    await waitFor(() => pushed.length === 3, "every receipt pushed");
    // The reader sent nothing after the position: each moved receipt goes to both members, as before.
    assert.deepStrictEqual([newestReads.n, pushed], [3, [[1n, 2n], [1n, 2n], [1n, 2n]]]);
    server.drain();
  });

  // The position was stored before the member list failed to read: the retry moved nothing, so it went to
  // the reader alone, and the others were never told of it live.
  it("tells the other members on the retry of a receipt whose member list could not be read once it was stored", async () => {
    let readSeq = 0n;
    let listFails = 1;
    const channels = {
      getMember: async () => ({ userId: 1n, readSeq }),
      getChannel: async () => ({ channelId: 7n, kind: "group", title: "g", createdAtMs: 1, createdBy: 2n }),
      listMembers: async () => {
        if (listFails-- > 0) throw new ChatError("unavailable", "member list away", 100);
        return [{ userId: 1n }, { userId: 2n }];
      },
      advanceReadSeq: async (_c: Id, _u: Id, seq: bigint) => ({ readSeq: (readSeq = seq > readSeq ? seq : readSeq), newest: undefined }),
    };
    const pushed: [Id[], bigint][] = [];
    const server = new ChatServer({
      serverId: "t",
      inbox: inboxKeeping([]),
      channels: channels as never,
      submitter: {} as never,
      directory: { pushToUsers: async (to: Id[], f: ServerFrame) => void pushed.push([to, f.kind.case === "receipt" ? f.kind.value.seq : -1n]) } as never,
    });
    const { handle, errors } = await openWelcomed(server, 1n);
    handle.receive(toBinary(ClientFrameSchema, create(ClientFrameSchema, { ref: 1n, kind: { case: "read", value: { channelId: 7n, seq: 5n } } })));
    await waitFor(() => errors.length === 1, "the receipt refused");
    assert.deepStrictEqual([readSeq, pushed], [5n, []]);
    handle.receive(toBinary(ClientFrameSchema, create(ClientFrameSchema, { ref: 2n, kind: { case: "read", value: { channelId: 7n, seq: 5n } } })));
    await waitFor(() => pushed.length === 1, "the retry pushed");
    assert.deepStrictEqual(pushed, [[[1n, 2n], 5n]]);
    // Told once: a repeat after that moves nothing, and goes to the reader alone again.
    handle.receive(toBinary(ClientFrameSchema, create(ClientFrameSchema, { ref: 3n, kind: { case: "read", value: { channelId: 7n, seq: 5n } } })));
    await waitFor(() => pushed.length === 2, "the repeat pushed");
    assert.deepStrictEqual(pushed[1], [[1n], 5n]);
    server.drain();
  });

  it("is not answered for a typing hint, a hint having no answer: the next one, a few seconds on, is the retry", async () => {
    const { server, handle, logged, errors } = await openWithRoutesAway();
    handle.receive(toBinary(ClientFrameSchema, create(ClientFrameSchema, { ref: 1n, kind: { case: "typing", value: { channelId: 7n } } })));
    await waitFor(() => errors.length > 0 || logged.length > 0, "the failed fan-out answered or logged");
    assert.deepStrictEqual(errors.map((e) => e.ref), []);
    server.drain();
  });
});

describe("session sync", () => {
  it("tells the device which entries after its cursor the inbox no longer keeps", async () => {
    const { server, handle, next } = openSession(inboxKeeping([4n, 5n]));
    await next("welcome");
    const batch = await next("syncBatch");
    assert.equal(batch.kind.case, "syncBatch");
    if (batch.kind.case !== "syncBatch") return;
    assert.deepStrictEqual(batch.kind.value.entries.map((e) => e.inboxSeq), [4n, 5n]);
    assert.equal(batch.kind.value.expiredThrough, 3n);
    // A sync from a cursor inside what is kept reports nothing expired.
    handle.receive(toBinary(ClientFrameSchema, create(ClientFrameSchema, { ref: 9n, kind: { case: "sync", value: { afterInboxSeq: 4n } } })));
    const again = await next("syncBatch");
    if (again.kind.case !== "syncBatch") return assert.fail("no sync batch");
    assert.deepStrictEqual(again.kind.value.entries.map((e) => e.inboxSeq), [5n]);
    assert.equal(again.kind.value.expiredThrough, 0n);
    server.drain();
  });

  it("reports nothing expired when the inbox has every entry after the cursor", async () => {
    const { server, next } = openSession(inboxKeeping([1n, 2n, 3n], 1n));
    await next("welcome");
    const batch = await next("syncBatch");
    if (batch.kind.case !== "syncBatch") return assert.fail("no sync batch");
    assert.deepStrictEqual(batch.kind.value.entries.map((e) => e.inboxSeq), [2n, 3n]);
    assert.equal(batch.kind.value.expiredThrough, 0n);
    server.drain();
  });

  it("sends the next entries to a device whose stored cursor is past the inbox's head (a restore put the inbox back further)", async () => {
    const kept = [1n, 2n, 3n];
    const { server, next, log } = openSession(inboxKeeping(kept, 10n));
    const welcome = await next("welcome");
    if (welcome.kind.case !== "welcome") return assert.fail("no welcome");
    // Clients take the welcome's cursor as where they are: past the head, they would drop seqs 4 to 10 as repeats.
    assert.deepStrictEqual([welcome.kind.value.headInboxSeq, welcome.kind.value.deviceCursor], [3n, 3n]);
    kept.push(4n);
    const entry = { inboxSeq: 4n, message: { messageId: 1004n, channelId: 7n, seq: 4n, senderUserId: 2n, senderDeviceId: 1n, clientMsgId: "m4", text: "hi", sentAtMs: 0 } };
    server.deliverLocal(1n, [], create(ServerFrameSchema, { kind: { case: "message", value: { entry: inboxEntryToProto(entry) } } }));
    await waitFor(() => log.some((f) => f.kind.case === "message" || f.kind.case === "syncBatch"), "entry 4");
    const sent = log.flatMap((f) => (f.kind.case === "message" ? [f.kind.value.entry!.inboxSeq] : f.kind.case === "syncBatch" ? f.kind.value.entries.map((e) => e.inboxSeq) : []));
    assert.deepStrictEqual(sent, [4n]);
    server.drain();
  });
});

/** An inbox of `count` entries whose reads wait for `gate` when one is set, and that records cursor moves. */
function controlledInbox(count: number, text = "hi") {
  const entry = (inboxSeq: bigint): InboxEntry => ({
    inboxSeq,
    message: { messageId: 1000n + inboxSeq, channelId: 7n, seq: inboxSeq, senderUserId: 2n, senderDeviceId: 1n, clientMsgId: `m${inboxSeq}`, text, sentAtMs: 0 },
  });
  const state = {
    count,
    gate: undefined as Promise<void> | undefined,
    cursors: [] as bigint[],
  };
  const inbox: Inbox = {
    append: () => Promise.reject(new Error("not in this test")),
    emptyTexts: async () => {},
    readAfter: async (_u: Id, after: bigint, limit: number) => {
      await state.gate;
      const out: InboxEntry[] = [];
      for (let s = after + 1n; s <= BigInt(state.count) && out.length < limit; s++) out.push(entry(s));
      return out;
    },
    head: async () => BigInt(state.count),
    getCursor: async () => {
      await state.gate;
      return 0n;
    },
    advanceCursor: async (_u: Id, _d: Id, seq: bigint) => void state.cursors.push(seq),
    dropCursor: () => Promise.reject(new Error("not in this test")),
  };
  return { inbox, state, entry };
}

const frame = (f: Parameters<typeof create<typeof ClientFrameSchema>>[1]) => toBinary(ClientFrameSchema, create(ClientFrameSchema, f));

describe("session sync requests", () => {
  it("answers a SyncRequest that arrives while the session is still catching up", async () => {
    const { inbox, state } = controlledInbox(3);
    let open!: () => void;
    const { server, handle, next } = openSession(inbox);
    await next("welcome");
    // The catch-up after the welcome is reading; a SyncRequest comes meanwhile.
    await next("syncBatch");
    state.gate = new Promise<void>((r) => (open = r));
    handle.receive(frame({ ref: 5n, kind: { case: "sync", value: { afterInboxSeq: 1n } } }));
    handle.receive(frame({ ref: 77n, kind: { case: "sync", value: { afterInboxSeq: 3n } } }));
    open();
    const refs: bigint[] = [];
    for (;;) {
      const b = await next("syncBatch");
      refs.push(b.ref);
      if (b.ref === 77n) break;
    }
    assert.ok(refs.includes(77n));
    server.drain();
  });

  it("never lets a SyncRequest move the device's cursor past the inbox's head", async () => {
    const { inbox, state } = controlledInbox(5);
    const { server, handle, next } = openSession(inbox);
    await next("welcome");
    await next("syncBatch");
    handle.receive(frame({ ref: 6n, kind: { case: "sync", value: { afterInboxSeq: 1n << 62n } } }));
    const b = await next("syncBatch");
    if (b.kind.case !== "syncBatch") return assert.fail("no sync batch");
    assert.equal(b.kind.value.headInboxSeq, 5n);
    handle.receive(frame({ ref: 7n, kind: { case: "deliveryAck", value: { inboxSeq: 1n << 62n } } }));
    handle.receive(frame({ ref: 8n, kind: { case: "heartbeat", value: {} } }));
    await next("heartbeatAck");
    assert.deepStrictEqual(state.cursors, [5n]);
    server.drain();
  });

  it("answers a DeliveryAck whose cursor write fails, or throws before its promise, with an error naming the ack", async () => {
    for (const fails of [() => Promise.reject(new ChatError("unavailable", "the store is away")), () => { throw new ChatError("unavailable", "the store is away"); }]) {
      const { inbox } = controlledInbox(2);
      inbox.advanceCursor = fails as Inbox["advanceCursor"];
      const { server, handle, next } = openSession(inbox);
      await next("welcome");
      await next("syncBatch");
      handle.receive(frame({ ref: 9n, kind: { case: "deliveryAck", value: { inboxSeq: 2n } } }));
      const error = await next("error");
      assert.equal(error.ref, 9n);
      assert.deepStrictEqual(error.kind.case === "error" && [error.kind.value.code, error.kind.value.refusedKind], [ErrorCode.UNAVAILABLE, 4]);
      server.drain();
    }
  });

  /** A session sent all `count` entries of its inbox, whose cursor writes the store holds (each recorded) until `release`. */
  async function caughtUpWithCursorsHeld(count: number, limits?: Parameters<typeof openSession>[2]) {
    const { inbox, state } = controlledInbox(count);
    const opened = openSession(inbox, undefined, limits);
    await opened.next("welcome");
    for (let sent = 0n; sent < BigInt(count); ) {
      const b = await opened.next("syncBatch");
      if (b.kind.case === "syncBatch") for (const e of b.kind.value.entries) sent = e.inboxSeq;
    }
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    inbox.advanceCursor = async (_u: Id, _d: Id, seq: bigint) => {
      state.cursors.push(seq);
      await held;
    };
    return { ...opened, state, release };
  }

  it("keeps one cursor write in flight while the store is slow, and writes the newest acked cursor once it answers", async () => {
    const { server, handle, next, state, release } = await caughtUpWithCursorsHeld(60, { framesPerSecond: 1000, frameBurst: 1000 });
    for (let seq = 1n; seq <= 50n; seq++) handle.receive(frame({ ref: seq, kind: { case: "deliveryAck", value: { inboxSeq: seq } } }));
    handle.receive(frame({ ref: 99n, kind: { case: "heartbeat", value: {} } }));
    await next("heartbeatAck");
    assert.deepStrictEqual(state.cursors, [1n], "one write while the store holds the first");
    release();
    await waitFor(() => state.cursors.at(-1) === 50n, "the newest cursor written");
    assert.ok(state.cursors.length <= 2, `${state.cursors.length} writes for 50 acks`);
    // A later ack, with the store free, is written as before.
    handle.receive(frame({ ref: 51n, kind: { case: "deliveryAck", value: { inboxSeq: 51n } } }));
    await waitFor(() => state.cursors.at(-1) === 51n, "a later ack written");
    server.drain();
  });

  it("never writes a cursor older than one still waiting to be written", async () => {
    const { server, handle, next, state, release } = await caughtUpWithCursorsHeld(10);
    for (const seq of [2n, 9n, 4n]) handle.receive(frame({ ref: seq, kind: { case: "deliveryAck", value: { inboxSeq: seq } } }));
    handle.receive(frame({ ref: 99n, kind: { case: "heartbeat", value: {} } }));
    await next("heartbeatAck");
    // Closed before the store answers: what was acked is still written.
    server.drain();
    release();
    await waitFor(() => state.cursors.length >= 2, "the waiting cursor written");
    assert.deepStrictEqual(state.cursors, [2n, 9n]);
  });

  it("splits a catch-up of long texts into pages of about a megabyte", async () => {
    const { inbox } = controlledInbox(30, "x".repeat(99_999));
    const { server, next } = openSession(inbox);
    await next("welcome");
    const seen: bigint[] = [];
    let pages = 0;
    while (seen.length < 30) {
      const b = await next("syncBatch");
      if (b.kind.case !== "syncBatch") return assert.fail("no sync batch");
      pages++;
      assert.ok(toBinary(ServerFrameSchema, b).byteLength <= 1.5 * 1024 * 1024, "a page stays near the budget");
      seen.push(...b.kind.value.entries.map((e) => e.inboxSeq));
    }
    assert.deepStrictEqual(seen, Array.from({ length: 30 }, (_, i) => BigInt(i + 1)));
    assert.ok(pages >= 8, `${pages} pages`);
    server.drain();
  });
});

describe("session back-pressure and early frames", () => {
  it("holds live pushes while the transport is paused, without closing, and catches up when it drains", async () => {
    const { inbox, state } = controlledInbox(0);
    const frames: ServerFrame[] = [];
    let paused = false;
    let closed: number | undefined;
    const server = new ChatServer({ serverId: "t", inbox, channels: {} as never, submitter: {} as never });
    const sink: SessionSink = {
      send: (f) => void frames.push(fromBinary(ServerFrameSchema, f as Uint8Array)),
      bufferedBytes: () => 0,
      paused: () => paused,
      close: (code) => void (closed = code),
    };
    const handle = server.open({ userId: 1n, deviceId: 1n, tokenExpiresAtMs: Date.now() + 60_000, encoding: "proto" }, sink);
    await waitFor(() => frames.some((f) => f.kind.case === "welcome"), "welcome");
    paused = true;
    const live = (seq: bigint) =>
      create(ServerFrameSchema, {
        kind: { case: "message", value: { entry: { inboxSeq: seq, message: { messageId: seq, channelId: 7n, seq, senderUserId: 2n, senderDeviceId: 1n, clientMsgId: "c", text: "t" } } } },
      });
    state.count = 1;
    server.deliverLocal(1n, [], live(1n));
    handle.receive(frame({ ref: 3n, kind: { case: "heartbeat", value: {} } }));
    await waitFor(() => frames.some((f) => f.kind.case === "heartbeatAck"), "heartbeat ack");
    assert.equal(closed, undefined, "a paused session is not closed as too slow");
    assert.ok(!frames.some((f) => f.kind.case === "message" || f.kind.case === "syncBatch"), "nothing pushed while paused");
    paused = false;
    handle.drained();
    await waitFor(() => frames.some((f) => f.kind.case === "syncBatch" && f.kind.value.entries.length === 1), "the held entry, once drained");
    server.drain();
  });

  describe("soft state while the transport is backed up", () => {
    const presence = (userId: bigint, status: PresenceStatus) => create(ServerFrameSchema, { kind: { case: "presence", value: { presence: { userId, status } } } });
    const typing = create(ServerFrameSchema, { kind: { case: "typing", value: { channelId: 9n, userId: 2n } } });
    const receipt = create(ServerFrameSchema, { kind: { case: "receipt", value: { channelId: 9n, userId: 2n, seq: 4n } } });
    const shown = (f: ServerFrame) =>
      f.kind.case === "presence" ? `presence ${f.kind.value.presence!.userId} ${PresenceStatus[f.kind.value.presence!.status]}` : (f.kind.case ?? "");

    function pausedSession() {
      const frames: ServerFrame[] = [];
      const state = { paused: false, buffered: 0 };
      const closes: number[] = [];
      const server = new ChatServer({ serverId: "t", inbox: inboxKeeping([]), channels: {} as never, submitter: {} as never });
      const handle = server.open({ userId: 1n, deviceId: 1n, tokenExpiresAtMs: Date.now() + 60_000, encoding: "proto" }, {
        send: (f) => void frames.push(fromBinary(ServerFrameSchema, f as Uint8Array)),
        bufferedBytes: () => state.buffered,
        paused: () => state.paused,
        close: (code) => void closes.push(code),
      });
      return { server, handle, frames, state, closes };
    }

    it("keeps only the latest presence per user and drops typing until it drains; receipts go as ever", async () => {
      const { server, handle, frames, state, closes } = pausedSession();
      await waitFor(() => frames.some((f) => f.kind.case === "welcome"), "welcome");
      frames.length = 0;
      state.paused = true;
      server.deliverLocal(1n, [], presence(2n, PresenceStatus.ONLINE));
      server.deliverLocal(1n, [], typing);
      server.deliverLocal(1n, [], receipt);
      server.deliverLocal(1n, [], presence(3n, PresenceStatus.ONLINE));
      server.deliverLocal(1n, [], presence(2n, PresenceStatus.OFFLINE));
      // A busy group's chatter: none of it queues while the reader is slow.
      for (let i = 0; i < 1000; i++) {
        server.deliverLocal(1n, [], presence(4n, i % 2 === 0 ? PresenceStatus.ONLINE : PresenceStatus.OFFLINE));
        server.deliverLocal(1n, [], typing);
      }
      assert.deepStrictEqual(frames.map(shown), ["receipt"]);
      state.paused = false;
      handle.drained();
      assert.deepStrictEqual(frames.map(shown), ["receipt", "presence 3 ONLINE", "presence 2 OFFLINE", "presence 4 OFFLINE"]);
      server.deliverLocal(1n, [], typing);
      assert.equal(frames.at(-1)?.kind.case, "typing", "typing flows again once drained");
      assert.deepStrictEqual(closes, []);
      server.drain();
    });

    it("keeps only the latest presence per user and typing in half its room for a session still starting, so a channel event past them is not lost", async () => {
      let started!: () => void;
      const checked = new Promise<boolean>((r) => (started = () => r(false)));
      const { server, frames } = openSession(inboxKeeping([]), undefined, undefined, () => checked);
      for (let i = 0; i < 200; i++) {
        server.deliverLocal(1n, [], presence(4n, i % 2 === 0 ? PresenceStatus.ONLINE : PresenceStatus.OFFLINE));
        server.deliverLocal(1n, [], typing);
      }
      server.deliverLocal(1n, [], create(ServerFrameSchema, { kind: { case: "channel", value: { userId: 2n } } }));
      server.deliverLocal(1n, [], presence(3n, PresenceStatus.ONLINE));
      assert.deepStrictEqual(frames, [], "nothing before the welcome");
      started();
      await waitFor(() => frames.length >= 36, "the welcome and what was held");
      assert.deepStrictEqual(frames.map(shown), ["welcome", "presence 4 OFFLINE", "presence 3 ONLINE", ...Array<string>(32).fill("typing"), "channel"]);
      server.drain();
    });

    it("gives up the oldest receipts, not a channel event past them, for a session still starting in a busy group", async () => {
      let started!: () => void;
      const checked = new Promise<boolean>((r) => (started = () => r(false)));
      const { server, frames } = openSession(inboxKeeping([]), undefined, undefined, () => checked);
      const receiptAt = (seq: bigint) => create(ServerFrameSchema, { kind: { case: "receipt", value: { channelId: 9n, userId: 2n, seq } } });
      server.deliverLocal(1n, [], create(ServerFrameSchema, { kind: { case: "channel", value: { userId: 2n } } }));
      for (let i = 1n; i <= 200n; i++) server.deliverLocal(1n, [], receiptAt(i));
      server.deliverLocal(1n, [], create(ServerFrameSchema, { kind: { case: "channel", value: { userId: 3n } } }));
      server.deliverLocal(1n, [], receiptAt(201n));
      started();
      await waitFor(() => frames.length >= 65, "the welcome and what was held");
      assert.deepStrictEqual(frames.map(shown), ["welcome", "channel", ...Array<string>(61).fill("receipt"), "channel", "receipt"]);
      const seqs = frames.flatMap((f) => (f.kind.case === "receipt" ? [f.kind.value.seq] : []));
      assert.equal(seqs.at(-1), 201n, "the newest receipt is kept");
      assert.equal(seqs[0], 140n, "the oldest ones went");
      const channels = frames.flatMap((f) => (f.kind.case === "channel" ? [f.kind.value.userId] : []));
      assert.deepStrictEqual(channels, [2n, 3n]);
      server.drain();
    });

    it("for a session still starting past its room with channel events, drops an UPDATED a newer one of its channel replaces, else closes 1013 rather than drop the newest", async () => {
      const updated = (channelId: bigint, title: string) =>
        create(ServerFrameSchema, { kind: { case: "channel", value: { kind: ChannelEventKind.UPDATED, channel: { channelId, title } } } });
      const joined = (userId: bigint) => create(ServerFrameSchema, { kind: { case: "channel", value: { kind: ChannelEventKind.JOINED, channel: { channelId: 9n }, userId } } });
      let started!: () => void;
      const checked = new Promise<boolean>((r) => (started = () => r(false)));
      const { server, frames, closes } = openSession(inboxKeeping([]), undefined, undefined, () => checked);
      // One naming a new owner is news the newer title does not carry: it stays.
      const newOwner = create(ServerFrameSchema, { kind: { case: "channel", value: { kind: ChannelEventKind.UPDATED, channel: { channelId: 5n, title: "owned" }, userId: 7n } } });
      server.deliverLocal(1n, [], newOwner);
      server.deliverLocal(1n, [], updated(5n, "old"));
      for (let i = 1n; i <= 62n; i++) server.deliverLocal(1n, [], joined(i));
      // Full: the newer title of channel 5 takes the older one's place.
      server.deliverLocal(1n, [], updated(5n, "new"));
      assert.deepStrictEqual(closes, []);
      started();
      await waitFor(() => frames.length >= 65, "the welcome and what was held");
      const titles = frames.flatMap((f) => (f.kind.case === "channel" && f.kind.value.kind === ChannelEventKind.UPDATED ? [f.kind.value.channel!.title] : []));
      assert.deepStrictEqual(titles, ["owned", "new"]);
      assert.equal(frames.at(-1)?.kind.case, "channel");
      assert.equal(frames.filter((f) => f.kind.case === "channel" && f.kind.value.kind === ChannelEventKind.JOINED).length, 62);
      server.drain();

      // Nothing superseded to give way: the newest join is not dropped, the session reconnects for it.
      let again!: () => void;
      const checkedAgain = new Promise<boolean>((r) => (again = () => r(false)));
      const later = openSession(inboxKeeping([]), undefined, undefined, () => checkedAgain);
      for (let i = 1n; i <= 64n; i++) later.server.deliverLocal(1n, [], joined(i));
      // A receipt then is the one to give way: the session stays.
      later.server.deliverLocal(1n, [], create(ServerFrameSchema, { kind: { case: "receipt", value: { channelId: 9n, userId: 3n, seq: 1n } } }));
      assert.deepStrictEqual(later.closes, []);
      later.server.deliverLocal(1n, [], joined(65n));
      assert.deepStrictEqual(later.closes, [CloseCode.tryAgain]);
      again();
      await new Promise((r) => setImmediate(r));
      assert.deepStrictEqual(later.frames, [], "no welcome for a session closed");
      later.server.drain();
    });

    it("sends what it holds before a newer presence that finds room before drained() is called, so no older status follows it", async () => {
      const { server, frames, state } = pausedSession();
      await waitFor(() => frames.some((f) => f.kind.case === "welcome"), "welcome");
      frames.length = 0;
      // Over the high-water mark of its own socket, then under it again.
      state.buffered = 2 * 1024 * 1024;
      server.deliverLocal(1n, [], presence(2n, PresenceStatus.ONLINE));
      assert.deepStrictEqual(frames, []);
      state.buffered = 0;
      server.deliverLocal(1n, [], presence(2n, PresenceStatus.OFFLINE));
      assert.deepStrictEqual(frames.map(shown), ["presence 2 ONLINE", "presence 2 OFFLINE"]);
      server.drain();
    });
  });

  it("closes with 4009 a session whose own socket holds past 8 MiB", async () => {
    let backlog = 0;
    const { server, handle, next, closes } = openSession(inboxKeeping([]), () => backlog);
    await next("welcome");
    backlog = 9 * 1024 * 1024;
    handle.receive(frame({ ref: 3n, kind: { case: "heartbeat", value: {} } }));
    await waitFor(() => closes.length > 0, "the close");
    assert.deepStrictEqual(closes, [4009]);
    server.drain();
  });

  it("answers frames past the early buffer with RATE_LIMITED once the welcome is out", async () => {
    const { inbox, state } = controlledInbox(0);
    let open!: () => void;
    state.gate = new Promise<void>((r) => (open = r));
    const { server, handle, next, frames } = openSession(inbox);
    // Typing hints that name no channel: answered at once (INVALID_ARGUMENT) when let through. Heartbeats have an allowance of their own.
    for (let i = 1; i <= 150; i++) handle.receive(frame({ ref: BigInt(i), kind: { case: "typing", value: {} } }));
    open();
    await next("welcome");
    const answered = () => frames.filter((f) => f.kind.case === "error");
    await waitFor(() => answered().length >= 150, "an answer to every frame");
    const limited = answered().filter((f) => f.kind.case === "error" && f.kind.value.code === ErrorCode.RATE_LIMITED);
    assert.equal(answered().length - limited.length, 100);
    assert.equal(limited.length, 50);
    server.drain();
  });

  it("answers an unreadable frame past the early buffer INVALID_FRAME once the welcome is out, as after it", async () => {
    const { inbox, state } = controlledInbox(0);
    let open!: () => void;
    state.gate = new Promise<void>((r) => (open = r));
    const { server, handle, next, frames, closes } = openSession(inbox);
    for (let i = 1; i <= 100; i++) handle.receive(frame({ ref: BigInt(i), kind: { case: "typing", value: {} } }));
    handle.receive(new Uint8Array([0xff, 0xff, 0xff]));
    open();
    await next("welcome");
    await waitFor(() => frames.filter((f) => f.kind.case === "error").length >= 101, "an answer to every frame");
    const unreadable = frames.filter((f) => f.kind.case === "error" && f.kind.value.code === ErrorCode.INVALID_FRAME);
    assert.equal(unreadable.length, 1);
    assert.deepStrictEqual(closes, []);
    server.drain();
  });
});

describe("session: rate limit", () => {
  it("never closes a client that resends each RATE_LIMITED frame after its retry_after_ms, with many in flight at once", async () => {
    // The limits' monotonic clock moves only when the test moves it: to the earliest retry once every
    // worker waits out one, so each goes again exactly as told. On timers a loaded machine ran some
    // late (refilling the bucket meanwhile) and some early, as the event loop's cached time lags.
    const monoNow = performance.now.bind(performance);
    let now = monoNow();
    performance.now = () => now;
    const sleepers: { at: number; wake: () => void }[] = [];
    let awake = 10;
    const advance = () => {
      if (awake > 0 || sleepers.length === 0) return;
      now = Math.max(now, Math.min(...sleepers.map((s) => s.at)));
      for (const s of sleepers.filter((s) => s.at <= now)) {
        sleepers.splice(sleepers.indexOf(s), 1);
        awake++;
        s.wake();
      }
    };
    const waitOutOnClock = (ms: number) =>
      new Promise<void>((wake) => {
        sleepers.push({ at: now + ms, wake });
        awake--;
        advance();
      });
    try {
      const { server, handle, next, frames, closes } = openSession(inboxKeeping([]), undefined, { framesPerSecond: 200, frameBurst: 10 });
      await next("welcome");
      // Ten frames in flight at a time, 600 in all; each waits exactly as told before it goes again.
      const answers = new Map<bigint, ServerFrame>();
      const answerTo = (r: bigint) => {
        for (const f of frames.splice(0)) if (f.ref) answers.set(f.ref, f);
        return answers.get(r);
      };
      let ref = 0n;
      let refused = 0;
      const one = async () => {
        for (;;) {
          const r = ++ref;
          // A typing hint that names no channel: answered INVALID_ARGUMENT at once when let through (a heartbeat is not counted against the frame rate).
          handle.receive(frame({ ref: r, kind: { case: "typing", value: {} } }));
          const answer = await waitFor(() => (closes.length > 0 ? "closed" : answerTo(r)), "an answer");
          if (answer === "closed") return;
          const { kind } = answer;
          assert.ok(kind.case === "error", kind.case);
          if (kind.value.code === ErrorCode.INVALID_ARGUMENT) return;
          assert.equal(kind.value.code, ErrorCode.RATE_LIMITED);
          refused++;
          await waitOutOnClock(kind.value.retryAfterMs);
        }
      };
      let sent = 0;
      const worker = async () => {
        for (; sent < 600 && closes.length === 0; sent++) await one();
        awake--;
        advance();
      };
      await Promise.all(Array.from({ length: 10 }, worker));
      assert.deepStrictEqual(closes, [], `closed after ${refused} refusals`);
      assert.ok(refused > 100, `the limit was reached (${refused} refusals)`);
      server.drain();
    } finally {
      performance.now = monoNow;
    }
  });
});

describe("session: text budget", () => {
  /** Sessions on one ChatServer whose submitter stores every text it is given. */
  function serverStoring(limits: Partial<SessionLimits>) {
    const stored: string[] = [];
    const submitter = {
      submit: async (_who: unknown, m: { text: string }) => {
        stored.push(m.text);
        return { messageId: BigInt(stored.length), duplicate: false };
      },
    };
    const server = new ChatServer({ serverId: "t", inbox: inboxKeeping([]), channels: {} as never, submitter: submitter as never, limits });
    const open = (userId: bigint) => {
      const frames: ServerFrame[] = [];
      const closes: number[] = [];
      const sink: SessionSink = {
        send: (f) => void frames.push(fromBinary(ServerFrameSchema, f as Uint8Array)),
        bufferedBytes: () => 0,
        close: (code) => void closes.push(code),
      };
      const handle = server.open({ userId, deviceId: 1n, tokenExpiresAtMs: Date.now() + 60_000, encoding: "proto" }, sink);
      const answer = (ref: bigint) => waitFor(() => frames.find((f) => f.ref === ref && f.kind.case !== "welcome"), `an answer to ${ref}`);
      const send = (ref: bigint, text: string, change: { editSeq?: bigint; deleteSeq?: bigint; reactSeq?: bigint } = {}) => {
        handle.receive(frame({ ref, kind: { case: "send", value: { clientMsgId: `m${ref}`, channelId: 7n, text, ...change } } }));
        return answer(ref);
      };
      const heartbeat = (ref: bigint) => {
        handle.receive(frame({ ref, kind: { case: "heartbeat", value: {} } }));
        return answer(ref);
      };
      return { frames, closes, send, heartbeat, ready: () => waitFor(() => frames.some((f) => f.kind.case === "welcome"), "the welcome") };
    };
    return { server, stored, open };
  }

  it("refuses a send past the user's budget of UTF-8 bytes, over all their sessions here, unstored and without closing; other users send on", async () => {
    const { server, stored, open } = serverStoring({ textBurstBytes: 4000, textBytesPerSecond: 1 });
    const [a, b, other] = [open(1n), open(1n), open(2n)];
    await Promise.all([a.ready(), b.ready(), other.ready()]);
    // 1,500 code units of 2 UTF-8 bytes each: the second does not fit in what the first left, counted in bytes.
    const text = "é".repeat(1500);
    assert.equal((await a.send(1n, text)).kind.case, "sendAck");
    const refused = await b.send(2n, text);
    assert.ok(refused.kind.case === "error", refused.kind.case);
    assert.equal(refused.kind.value.code, ErrorCode.RATE_LIMITED);
    assert.equal(refused.kind.value.clientMsgId, "m2");
    assert.ok(refused.kind.value.retryAfterMs > 0);
    assert.equal((await other.send(3n, text)).kind.case, "sendAck");
    assert.equal(stored.length, 2);
    // Small texts still fit in what is left.
    assert.equal((await b.send(4n, "hi")).kind.case, "sendAck");
    assert.deepStrictEqual([...a.closes, ...b.closes, ...other.closes], []);
    server.drain();
  });

  it("charges nothing for a text refused for its length: the next send that fits the budget goes through", async () => {
    const { server, stored, open } = serverStoring({ textBurstBytes: 150_000, textBytesPerSecond: 1 });
    const a = open(1n);
    await a.ready();
    const refused = await a.send(1n, "x".repeat(100_000));
    assert.ok(refused.kind.case === "error" && refused.kind.value.code === ErrorCode.TEXT_TOO_LONG, refused.kind.case);
    // Charged, the 100,000 bytes left 50,000 of the burst, too few for this one.
    assert.equal((await a.send(2n, "x".repeat(99_999))).kind.case, "sendAck");
    assert.equal(stored.length, 1);
    server.drain();
  });

  // A text pasted into a reaction or a delete was refused (INVALID_ARGUMENT) only by the submitter, after
  // the session had taken its bytes: up to 400 KB of the burst gone, and the sender's next message refused.
  it("charges nothing for a reaction longer than any emoji or a delete with text: refused at once, the next send goes through", async () => {
    const { server, stored, open } = serverStoring({ textBurstBytes: 150_000, textBytesPerSecond: 1 });
    const a = open(1n);
    await a.ready();
    for (const [ref, change] of [[1n, { reactSeq: 1n }], [2n, { deleteSeq: 1n }]] as const) {
      const refused = await a.send(ref, "x".repeat(99_999), change);
      assert.ok(refused.kind.case === "error" && refused.kind.value.code === ErrorCode.INVALID_ARGUMENT, refused.kind.case);
      assert.equal(refused.kind.value.clientMsgId, `m${ref}`);
    }
    // Charged, the first 99,999 bytes left 50,001 of the burst, too few for this one.
    assert.equal((await a.send(3n, "x".repeat(99_999))).kind.case, "sendAck");
    assert.equal(stored.length, 1);
    server.drain();
  });

  it("lets a send through again once the budget has refilled for it", async () => {
    const { server, open } = serverStoring({ textBurstBytes: 1000, textBytesPerSecond: 20_000 });
    const a = open(1n);
    await a.ready();
    // The budget's monotonic clock moves only when the test moves it: on a busy machine a stall
    // between the sends refilled the budget, and a timer of retry_after_ms, timed from the event
    // loop's cached time, fired before that much had passed on this clock.
    const monoNow = performance.now.bind(performance);
    let now = monoNow();
    performance.now = () => now;
    try {
      assert.equal((await a.send(1n, "x".repeat(1000))).kind.case, "sendAck");
      const { kind } = await a.send(2n, "x".repeat(1000));
      assert.ok(kind.case === "error" && kind.value.code === ErrorCode.RATE_LIMITED, kind.case);
      now += kind.value.retryAfterMs;
      assert.equal((await a.send(3n, "x".repeat(1000))).kind.case, "sendAck");
    } finally {
      performance.now = monoNow;
    }
    server.drain();
  });

  it("refuses a send past the user's send rate, over all their sessions here, edits, deletes and reactions counted, unstored and without closing; other users send on", async () => {
    const { server, stored, open } = serverStoring({ sendsPerSecond: 1, sendBurst: 3 });
    const [a, b, other] = [open(1n), open(1n), open(2n)];
    await Promise.all([a.ready(), b.ready(), other.ready()]);
    assert.equal((await a.send(1n, "hi")).kind.case, "sendAck");
    assert.equal((await b.send(2n, "👍", { reactSeq: 1n })).kind.case, "sendAck");
    assert.equal((await a.send(3n, "", { deleteSeq: 1n })).kind.case, "sendAck");
    const refused = await b.send(4n, "hello", { editSeq: 1n });
    assert.ok(refused.kind.case === "error", refused.kind.case);
    assert.equal(refused.kind.value.code, ErrorCode.RATE_LIMITED);
    assert.match(refused.kind.value.message, /too many messages/);
    assert.equal(refused.kind.value.clientMsgId, "m4");
    assert.ok(refused.kind.value.retryAfterMs > 0 && refused.kind.value.retryAfterMs <= 1000, `retry after ${refused.kind.value.retryAfterMs} ms`);
    assert.equal((await other.send(5n, "hi")).kind.case, "sendAck");
    // What is no send is not counted.
    assert.equal((await b.heartbeat(6n)).kind.case, "heartbeatAck");
    assert.deepStrictEqual(stored, ["hi", "👍", "", "hi"]);
    assert.deepStrictEqual([...a.closes, ...b.closes, ...other.closes], []);
    server.drain();
  });

  it("counts no sends at a send rate of 0", async () => {
    const { server, stored, open } = serverStoring({ sendsPerSecond: 0, sendBurst: 1 });
    const a = open(1n);
    await a.ready();
    for (let ref = 1n; ref <= 5n; ref++) assert.equal((await a.send(ref, "hi")).kind.case, "sendAck");
    assert.equal(stored.length, 5);
    server.drain();
  });
});

describe("session start, sync races and failed reads", () => {
  const entryOf = (inboxSeq: bigint): InboxEntry => ({
    inboxSeq,
    message: { messageId: 1000n + inboxSeq, channelId: 7n, seq: inboxSeq, senderUserId: 2n, senderDeviceId: 1n, clientMsgId: `m${inboxSeq}`, text: "hi", sentAtMs: 0 },
  });
  const liveFrame = (inboxSeq: bigint) => create(ServerFrameSchema, { kind: { case: "message", value: { entry: inboxEntryToProto(entryOf(inboxSeq)) } } });
  const seqsIn = (frames: ServerFrame[]) =>
    frames.flatMap((f) => (f.kind.case === "message" ? [f.kind.value.entry!.inboxSeq] : f.kind.case === "syncBatch" ? f.kind.value.entries.map((e) => e.inboxSeq) : []));

  /** An inbox whose entries are `kept`, with a hook to hold a read of the cursor, of head, or of entries. */
  function heldInbox() {
    const kept: bigint[] = [];
    const holds: { cursor?: Promise<void>; head?: Promise<void>; read?: () => Promise<void> } = {};
    const inbox: Inbox = {
      append: () => Promise.reject(new Error("not in this test")),
      readAfter: async (_u, after, limit) => {
        await holds.read?.();
        return kept.filter((s) => s > after).slice(0, limit).map(entryOf);
      },
      head: async () => {
        const at = kept[kept.length - 1] ?? 0n;
        await holds.head;
        return at;
      },
      getCursor: async () => {
        await holds.cursor;
        return 0n;
      },
      advanceCursor: async () => {},
      dropCursor: async () => {},
      emptyTexts: async () => {},
    };
    return { inbox, kept, holds };
  }

  it("sends an entry pushed live while the session was still reading its cursor", async () => {
    const { inbox, kept, holds } = heldInbox();
    let cursorRead!: () => void;
    holds.cursor = new Promise((r) => (cursorRead = r));
    const { server, next, log } = openSession(inbox);
    // head() has answered 0; the pipeline appends entry 1 and pushes it before the cursor is read.
    await new Promise((r) => setImmediate(r));
    kept.push(1n);
    server.deliverLocal(1n, [], liveFrame(1n));
    cursorRead();
    await next("welcome");
    await waitFor(() => seqsIn(log).length > 0, "entry 1");
    assert.deepStrictEqual(seqsIn(log), [1n]);
    server.drain();
  });

  it("does not send again in a SyncBatch an entry it pushed live while the SyncRequest read head", async () => {
    const { inbox, kept, holds } = heldInbox();
    kept.push(1n, 2n, 3n, 4n, 5n);
    const { server, handle, next, log } = openSession(inbox);
    await next("welcome");
    await waitFor(() => seqsIn(log).length === 5, "the catch-up");
    let headRead!: () => void;
    holds.head = new Promise((r) => (headRead = r));
    handle.receive(frame({ ref: 9n, kind: { case: "sync", value: { afterInboxSeq: 5n } } }));
    kept.push(6n);
    server.deliverLocal(1n, [], liveFrame(6n));
    headRead();
    await waitFor(() => log.some((f) => f.kind.case === "syncBatch" && f.ref === 9n), "the answer to the SyncRequest");
    assert.deepStrictEqual(seqsIn(log), [1n, 2n, 3n, 4n, 5n, 6n], "entry 6 once");
    // A device that asks to go back gets what it asked for again.
    handle.receive(frame({ ref: 10n, kind: { case: "sync", value: { afterInboxSeq: 4n } } }));
    await waitFor(() => log.some((f) => f.ref === 10n), "the answer to going back");
    const back = log.find((f) => f.ref === 10n)!;
    if (back.kind.case !== "syncBatch") return assert.fail("no sync batch");
    assert.deepStrictEqual([back.ref, back.kind.value.entries.map((e) => e.inboxSeq)], [10n, [5n, 6n]]);
    server.drain();
  });

  it("answers the SyncRequest that came last from its own after_inbox_seq, though an earlier one's head read answers after its", async () => {
    const { inbox, kept, holds } = heldInbox();
    kept.push(1n, 2n, 3n, 4n, 5n);
    const { server, handle, next, log } = openSession(inbox);
    await next("welcome");
    await waitFor(() => seqsIn(log).length === 5, "the catch-up");
    // The first request's head read is slow (another connection of the store's pool); the second's answers at once.
    let firstHeadRead!: () => void;
    holds.head = new Promise((r) => (firstHeadRead = r));
    handle.receive(frame({ ref: 1n, kind: { case: "sync", value: { afterInboxSeq: 3n } } }));
    holds.head = undefined;
    // The device dropped what it had (a cache cleared): it asks for everything.
    handle.receive(frame({ ref: 2n, kind: { case: "sync", value: { afterInboxSeq: 0n } } }));
    await new Promise((r) => setImmediate(r));
    firstHeadRead();
    const lastPage = (ref: bigint) => log.some((f) => f.ref === ref && f.kind.case === "syncBatch" && !f.kind.value.hasMore);
    await waitFor(() => lastPage(1n) && lastPage(2n), "a last page for each request");
    const answer = log.filter((f) => f.ref === 2n);
    assert.deepStrictEqual(seqsIn(answer), [1n, 2n, 3n, 4n, 5n], "the request that came last has everything after its own after_inbox_seq");
    server.drain();
  });

  it("answers a SyncRequest whose inbox read fails with UNAVAILABLE, and reads again after a pause", async () => {
    const { inbox, kept, holds } = heldInbox();
    kept.push(1n, 2n);
    let failures = 1;
    const { server, handle, next, log } = openSession(inbox);
    await next("welcome");
    await waitFor(() => seqsIn(log).length === 2, "the catch-up");
    holds.read = async () => {
      if (failures-- > 0) throw new Error("read timed out");
    };
    kept.push(3n);
    handle.receive(frame({ ref: 9n, kind: { case: "sync", value: { afterInboxSeq: 2n } } }));
    const refused = await next("error");
    if (refused.kind.case !== "error") return assert.fail("no error");
    assert.deepStrictEqual([refused.ref, refused.kind.value.code], [9n, ErrorCode.UNAVAILABLE]);
    // Nothing else asks: the pump's own retry brings entry 3.
    await waitFor(() => seqsIn(log).includes(3n), "entry 3 after the retry", 10_000);
    server.drain();
  });

  it("sends no page of its own while a SyncRequest reads head, so none with ref 0 passes for its answer", async () => {
    const { inbox, kept, holds } = heldInbox();
    const { server, handle, next, log } = openSession(inbox);
    await next("welcome");
    const pages = () => log.flatMap((f) => (f.kind.case === "syncBatch" ? [[f.ref, f.kind.value.entries.map((e) => e.inboxSeq), f.kind.value.hasMore]] : []));
    let headRead!: () => void;
    holds.head = new Promise((r) => (headRead = r));
    handle.receive(frame({ ref: 0n, kind: { case: "sync", value: { afterInboxSeq: 0n } } }));
    // Entry 2 is not the next one: its push wakes the pump.
    kept.push(1n, 2n);
    server.deliverLocal(1n, [], liveFrame(2n));
    // The inbox answers at once: by the next turn a read the pump made would be sent.
    await new Promise((r) => setImmediate(r));
    assert.deepStrictEqual(pages(), [], "no page before the answer");
    headRead();
    await waitFor(() => pages().length > 0, "the answer");
    assert.deepStrictEqual(pages(), [[0n, [1n, 2n], false]]);
    server.drain();
  });

  it("sends what the pump held back for a SyncRequest whose head read fails", async () => {
    const { inbox, kept, holds } = heldInbox();
    const { server, handle, next, log } = openSession(inbox);
    await next("welcome");
    let headFailed!: (err: Error) => void;
    holds.head = new Promise((_, reject) => (headFailed = reject));
    handle.receive(frame({ ref: 0n, kind: { case: "sync", value: { afterInboxSeq: 0n } } }));
    kept.push(1n, 2n);
    server.deliverLocal(1n, [], liveFrame(2n));
    await new Promise((r) => setImmediate(r));
    headFailed(new Error("head timed out"));
    await next("error");
    await waitFor(() => seqsIn(log).length === 2, "entries 1 and 2 from the pump");
    assert.deepStrictEqual(seqsIn(log), [1n, 2n]);
    server.drain();
  });

  it("waits out the pause after a failed read before reading again, however many live pushes come meanwhile", async () => {
    const { inbox, kept, holds } = heldInbox();
    kept.push(1n, 2n, 3n);
    let reads = 0;
    let failing = true;
    holds.read = async () => {
      reads++;
      if (failing) throw new Error("inbox timed out");
    };
    const { server, next, frames, closes } = openSession(inbox);
    await next("welcome");
    await waitFor(() => reads === 1, "the first catch-up read, failed");
    // A busy chat: live pushes keep coming while the store is away.
    for (let seq = 4n; seq <= 8n; seq++) {
      kept.push(seq);
      server.deliverLocal(1n, [], liveFrame(seq));
      await new Promise((r) => setImmediate(r));
    }
    assert.equal(reads, 1, "no read before the pause is over");
    assert.deepStrictEqual(closes, []);
    failing = false;
    const sent = () => frames.filter((f) => f.kind.case === "syncBatch").flatMap((f) => (f.kind.case === "syncBatch" ? f.kind.value.entries.map((e) => e.inboxSeq) : []));
    await waitFor(() => sent().length === 8, "every entry, once the pause is over");
    assert.deepStrictEqual(sent(), [1n, 2n, 3n, 4n, 5n, 6n, 7n, 8n]);
    assert.deepStrictEqual(closes, []);
    server.drain();
  });

  it("closes with 1011 a session whose inbox reads keep failing, so the device reconnects", async () => {
    const { inbox, kept, holds } = heldInbox();
    kept.push(1n);
    holds.read = async () => {
      throw new Error("inbox down");
    };
    const closes: number[] = [];
    const server = new ChatServer({ serverId: "t", inbox, channels: {} as never, submitter: {} as never });
    server.open({ userId: 1n, deviceId: 1n, tokenExpiresAtMs: Date.now() + 60_000, encoding: "proto" }, {
      send: () => undefined,
      bufferedBytes: () => 0,
      close: (code) => void closes.push(code),
    });
    await waitFor(() => closes.length > 0, "the close", 20_000);
    assert.deepStrictEqual(closes, [1011]);
    server.drain();
  });
});

describe("session sync answers end with has_more = false", () => {
  const upTo = (n: number) => Array.from({ length: n }, (_, i) => BigInt(i + 1));
  const pagesIn = (log: ServerFrame[]) =>
    log.flatMap((f) => (f.kind.case === "syncBatch" ? [{ ref: f.ref, seqs: f.kind.value.entries.map((e) => e.inboxSeq), hasMore: f.kind.value.hasMore }] : []));
  const sync = (ref: bigint, afterInboxSeq: bigint, limit = 0) => frame({ ref, kind: { case: "sync", value: { afterInboxSeq, limit } } });

  it("keeps answering a SyncRequest's ref and limit after its pages stalled on back-pressure", async () => {
    let backlog = () => 0;
    const inbox = inboxKeeping(upTo(950), 950n);
    let reads = 0;
    const { server, handle, next, log } = openSession({ ...inbox, readAfter: (...args) => (reads++, inbox.readAfter(...args)) }, () => backlog());
    await next("welcome");
    let readsWhenBackedUp: number | undefined;
    backlog = () => {
      if (pagesIn(log).length < 2) return 0;
      readsWhenBackedUp ??= reads;
      return 2 * 1024 * 1024;
    };
    handle.receive(sync(7n, 0n, 300));
    // The pump looks at the socket before each read: the first look that finds it backed up comes
    // after the second page, and a pump going on regardless would read again in the same turn.
    await waitFor(() => readsWhenBackedUp !== undefined, "the pump to find the socket backed up");
    assert.equal(reads, readsWhenBackedUp, "no read while backed up");
    assert.equal(pagesIn(log).length, 2, "no page while backed up");
    backlog = () => 0;
    handle.drained();
    await waitFor(() => pagesIn(log).some((p) => !p.hasMore), "the last page", 2_000);
    const pages = pagesIn(log);
    assert.deepStrictEqual(pages.map((p) => [p.ref, p.seqs.length, p.hasMore]), [[7n, 300, true], [7n, 300, true], [7n, 300, true], [7n, 50, false]]);
    assert.deepStrictEqual(pages.flatMap((p) => p.seqs), upTo(950));
    server.drain();
  });

  it("ends a catch-up whose last read filled its page with an empty has_more = false page", async () => {
    const { server, handle, next, log } = openSession(inboxKeeping(upTo(200)));
    await next("welcome");
    await waitFor(() => pagesIn(log).some((p) => !p.hasMore), "the last page of the catch-up", 2_000);
    assert.deepStrictEqual(pagesIn(log).map((p) => [p.ref, p.seqs.length, p.hasMore]), [[0n, 200, true], [0n, 0, false]]);
    // A SyncRequest's answer ends the same way.
    handle.receive(sync(4n, 0n, 100));
    await waitFor(() => pagesIn(log).some((p) => p.ref === 4n && !p.hasMore), "the last page of the answer", 2_000);
    assert.deepStrictEqual(pagesIn(log).filter((p) => p.ref === 4n).map((p) => [p.seqs.length, p.hasMore]), [[100, true], [100, true], [0, false]]);
    server.drain();
  });

  it("answers a SyncRequest with ref 0 (the field left unset) as any other: by its own limit, and with an empty last page when nothing is new", async () => {
    const { server, handle, next, log } = openSession(inboxKeeping(upTo(5), 5n));
    await next("welcome");
    handle.receive(sync(0n, 5n));
    await waitFor(() => pagesIn(log).length > 0, "the answer to a device that has everything", 2_000);
    handle.receive(sync(0n, 0n, 2));
    await waitFor(() => pagesIn(log).filter((p) => !p.hasMore).length === 2, "the answer from the start", 2_000);
    assert.deepStrictEqual(
      pagesIn(log).map((p) => [p.ref, p.seqs, p.hasMore]),
      [[0n, [], false], [0n, [1n, 2n], true], [0n, [3n, 4n], true], [0n, [5n], false]],
    );
    server.drain();
  });

  it("ends a SyncRequest superseded by a newer one with a last page, and answers the newer from its own after_inbox_seq", async () => {
    const { server, handle, next, log } = openSession(inboxKeeping(upTo(300), 300n));
    await next("welcome");
    handle.receive(sync(1n, 0n));
    handle.receive(sync(2n, 0n));
    await waitFor(() => [1n, 2n].every((ref) => pagesIn(log).some((p) => p.ref === ref && !p.hasMore)), "a last page for each request", 2_000);
    const newer = pagesIn(log).filter((p) => p.ref === 2n);
    assert.deepStrictEqual(newer.flatMap((p) => p.seqs), upTo(300));
    assert.deepStrictEqual(newer.map((p) => p.hasMore), [true, false]);
    server.drain();
  });
});

describe("session start: routes and failed reads", () => {
  const device = (deviceId: Id): SessionIdentity => ({ userId: 1n, deviceId, tokenExpiresAtMs: Date.now() + 60_000, encoding: "proto" });
  const isWelcome = (f: Uint8Array | string) => fromBinary(ServerFrameSchema, f as Uint8Array).kind.case === "welcome";

  /** Session routes whose changes land (or fail) only when the test says, in the order it picks. */
  function heldRoutes() {
    const routed = new Set<Id>();
    const started: string[] = [];
    const inFlight: { land(): void; fail(): void }[] = [];
    const change = (what: "add" | "remove", userId: Id) =>
      new Promise<void>((resolve, reject) => {
        started.push(what);
        const land = () => {
          if (what === "add") routed.add(userId);
          else routed.delete(userId);
          resolve();
        };
        inFlight.push({ land, fail: () => reject(new Error("routing store timed out")) });
      });
    const routes: SessionRoutes = {
      add: (u) => change("add", u),
      remove: (u) => change("remove", u),
      refresh: async () => {},
      lookup: async () => new Map(),
      close: async () => {},
    };
    // A store may apply two changes sent together in either order: here the newest lands first.
    const landAll = (changes: number) =>
      waitFor(() => {
        inFlight.pop()?.land();
        return inFlight.length === 0 && started.length === changes;
      }, `${changes} route changes`);
    const next = () => waitFor(() => inFlight.pop(), "a route change");
    return { routes, routed, started, next, landAll };
  }

  /** A ChatServer over `inbox` and `routes`; records which devices read their cursor while user 1 had no route, and which were welcomed. */
  function routedServer(routes: SessionRoutes, routed: Set<Id>, inbox: Inbox = inboxKeeping([])) {
    const readUnrouted: Id[] = [];
    const welcomed: Id[] = [];
    const watched: Inbox = {
      ...inbox,
      getCursor: (u, d) => {
        if (!routed.has(u)) readUnrouted.push(d);
        return inbox.getCursor(u, d);
      },
    };
    const server = new ChatServer({ serverId: "t", inbox: watched, channels: {} as never, submitter: {} as never, routes });
    const open = (deviceId: Id) =>
      server.open(device(deviceId), {
        send: (f) => void (isWelcome(f) && welcomed.push(deviceId)),
        bufferedBytes: () => 0,
        close: () => {},
      });
    return { server, open, readUnrouted, welcomed };
  }

  // Nothing timed: one turn of the event loop lets whatever could run without the route run.
  const settle = () => new Promise((r) => setImmediate(r));

  it("reads a user's second session's inbox only once the route its first session is adding is visible", async () => {
    const { routes, routed, next } = heldRoutes();
    const { server, open, readUnrouted, welcomed } = routedServer(routes, routed);
    open(1n);
    open(2n);
    await settle();
    assert.deepStrictEqual(welcomed, [], "no welcome before the route");
    (await next()).land();
    await waitFor(() => welcomed.length === 2, "both welcomes");
    assert.deepStrictEqual(readUnrouted, []);
    server.drain();
  });

  it("starts a user's second session, as its first, only once adding the route failed", async () => {
    const { routes, routed, next } = heldRoutes();
    const { server, open, welcomed } = routedServer(routes, routed);
    open(1n);
    open(2n);
    await settle();
    assert.deepStrictEqual(welcomed, []);
    (await next()).fail();
    await waitFor(() => welcomed.length === 2, "both welcomes, without a route");
    server.drain();
  });

  it("removes the route of a user whose last session ended while it was being added only after the add", async () => {
    const { routes, routed, started, landAll } = heldRoutes();
    const { server, open } = routedServer(routes, routed);
    open(1n).closed();
    await landAll(2);
    assert.deepStrictEqual(started, ["add", "remove"]);
    assert.equal(routed.has(1n), false, "no stale route");
    server.drain();
  });

  it("keeps the route of a user who opens a session while the route of their last one is being removed", async () => {
    const { routes, routed, started, next, landAll } = heldRoutes();
    const { server, open, welcomed, readUnrouted } = routedServer(routes, routed);
    const first = open(1n);
    (await next()).land();
    await waitFor(() => welcomed.length === 1, "the first welcome");
    first.closed();
    open(2n);
    await landAll(3);
    await waitFor(() => welcomed.length === 2, "the second welcome");
    assert.deepStrictEqual(started, ["add", "remove", "add"]);
    assert.equal(routed.has(1n), true, "the open session has its route");
    assert.deepStrictEqual(readUnrouted, []);
    server.drain();
  });

  it("keeps the route of a user while another of their sessions stays here, and removes it with their last", async () => {
    const { routes, routed, started, next, landAll } = heldRoutes();
    const { server, open, welcomed } = routedServer(routes, routed);
    const [phone, laptop] = [open(1n), open(2n)];
    (await next()).land();
    await waitFor(() => welcomed.length === 2, "both welcomes");
    phone.closed();
    await settle();
    assert.deepStrictEqual(started, ["add"], "no remove while the laptop's session stays");
    assert.equal(routed.has(1n), true);
    laptop.closed();
    await landAll(2);
    assert.deepStrictEqual(started, ["add", "remove"]);
    assert.equal(routed.has(1n), false);
    server.drain();
  });

  it("catches up the sessions of a user whose route could not be added once a refresh restores it", async () => {
    const { routes, routed, next } = heldRoutes();
    const kept: bigint[] = [];
    const server = new ChatServer({ serverId: "t", inbox: inboxKeeping(kept), channels: {} as never, submitter: {} as never, routes });
    const frames = openNoting(server, device(1n));
    (await next()).fail();
    await waitFor(() => frames.includes("welcome"), "the welcome, without a route");
    // Appended while no route named this server: the pipeline pushed it nowhere.
    kept.push(1n);
    await server.refreshRoutes();
    await waitFor(() => frames.includes("syncBatch"), "the missed entry, read once the route is back");
    assert.equal(routed.has(1n), false, "the refresh, not the failed add, restored it");
    server.drain();
  });

  it("catches up every session once a refresh lands after the routes may have lapsed (refreshes refused, the connection up: no reset)", async () => {
    let refusing = false;
    let lastRefreshOk = performance.now();
    const routes: SessionRoutes = {
      ttlMs: 200,
      add: async () => {},
      remove: async () => {},
      // Redis at its maxmemory refuses the routes' writes (OOM) on a connection that stays up.
      refresh: async () => {
        if (refusing) throw new Error("OOM command not allowed when used memory > 'maxmemory'");
        lastRefreshOk = performance.now();
      },
      lookup: async () => new Map(),
      close: async () => {},
    };
    const kept: bigint[] = [];
    const server = new ChatServer({ serverId: "t", inbox: inboxKeeping(kept), channels: {} as never, submitter: {} as never, routes });
    const frames = openNoting(server, device(1n));
    await waitFor(() => frames.includes("welcome"), "the welcome");
    await server.refreshRoutes();
    refusing = true;
    await server.refreshRoutes();
    await waitFor(() => performance.now() - lastRefreshOk > routes.ttlMs!, "the route's life over since the last refresh that landed");
    // Appended while the route had lapsed: the pipeline pushed it nowhere.
    kept.push(1n);
    refusing = false;
    await server.refreshRoutes();
    await waitFor(() => frames.includes("syncBatch"), "the missed entry, read once the route is back", 2_000);
    server.drain();
  });

  /** A ChatServer over `routes` (changes land at once unless they say otherwise); `open(userId)` opens a session of that user. */
  function serverOf(routes: SessionRoutes) {
    const server = new ChatServer({ serverId: "t", inbox: inboxKeeping([]), channels: {} as never, submitter: {} as never, routes });
    const welcomed = new Set<Id>();
    const open = (userId: Id) =>
      server.open({ userId, deviceId: 1n, tokenExpiresAtMs: Date.now() + 60_000, encoding: "proto" }, {
        send: (f) => void (isWelcome(f) && welcomed.add(userId)),
        bufferedBytes: () => 0,
        close: () => {},
      });
    return { server, open, welcomed };
  }

  it("removes again, once a refresh sent in chunks is done, the route of a user whose last session ended during it", async () => {
    const routed = new Set<Id>();
    let sendSecondChunk!: () => void;
    const secondChunk = new Promise<void>((r) => (sendSecondChunk = r));
    const routes: SessionRoutes = {
      add: async (u) => void routed.add(u),
      remove: async (u) => void routed.delete(u),
      // As the Redis adapter does, one chunk after the other (here a user per chunk).
      refresh: async (_s, users) => {
        routed.add(users[0]!);
        await secondChunk;
        for (const u of users.slice(1)) routed.add(u);
      },
      lookup: async () => new Map(),
      close: async () => {},
    };
    const { server, open, welcomed } = serverOf(routes);
    open(1n);
    const last = open(2n);
    await waitFor(() => welcomed.size === 2, "both welcomes");
    const refreshing = server.refreshRoutes();
    last.closed();
    await waitFor(() => !routed.has(2n), "the route of user 2 removed while the refresh is under way");
    sendSecondChunk();
    await refreshing;
    assert.deepStrictEqual([...routed], [1n], "no route left to a server that holds no session of user 2");
    server.drain();
  });

  it("removes at the next refresh the route whose remove failed, unless its user came back", async () => {
    const routed = new Set<Id>();
    let failing = true;
    let removes = 0;
    const routes: SessionRoutes = {
      add: async (u) => void routed.add(u),
      remove: async (u) => {
        removes++;
        if (failing) throw new Error("routing store timed out");
        routed.delete(u);
      },
      refresh: async (_s, users) => void users.forEach((u) => routed.add(u)),
      lookup: async () => new Map(),
      close: async () => {},
    };
    const { server, open, welcomed } = serverOf(routes);
    const gone = open(1n);
    const back = open(2n);
    await waitFor(() => welcomed.size === 2, "both welcomes");
    gone.closed();
    back.closed();
    await waitFor(() => removes === 2, "both removes tried (and failed)");
    open(2n);
    await waitFor(() => routed.has(2n), "user 2's route added again");
    failing = false;
    await server.refreshRoutes();
    assert.deepStrictEqual([...routed], [2n]);
    server.drain();
  });

  it("drain() resolves only once the routes of the sessions it ended are removed, a remove chained behind an add included", async () => {
    const { routes, routed, started, landAll } = heldRoutes();
    const { server, open } = routedServer(routes, routed);
    open(1n);
    let drained: boolean | undefined;
    const draining = Promise.resolve(server.drain()).then((done) => (drained = done));
    await settle();
    assert.equal(drained, undefined, "not before the route is removed: the routing store closes after it");
    await landAll(2);
    await draining;
    assert.equal(drained, true);
    assert.deepStrictEqual(started, ["add", "remove"]);
    assert.equal(routed.has(1n), false, "no route left to a server that is gone");
  });

  it("drain() removes once more the routes whose remove failed, as no refresh will", async () => {
    const routed = new Set<Id>();
    let failing = true;
    const routes: SessionRoutes = {
      add: async (u) => void routed.add(u),
      remove: async (u) => {
        if (failing) throw new Error("routing store timed out");
        routed.delete(u);
      },
      refresh: async () => {},
      lookup: async () => new Map(),
      close: async () => {},
    };
    const { server, open, welcomed } = serverOf(routes);
    const gone = open(1n);
    await waitFor(() => welcomed.has(1n), "the welcome");
    gone.closed();
    await settle();
    failing = false;
    assert.equal(await server.drain(), true);
    assert.deepStrictEqual([...routed], []);
  });

  it("drain() gives up waiting for routes after its bound when the routing store does not answer", async () => {
    const { routes, routed } = heldRoutes();
    const { server, open } = routedServer(routes, routed);
    open(1n);
    assert.equal(await server.drain("server shutting down", 20), false);
  });

  it("runs one route refresh at a time: those asked for while one runs wait for it and share one more run, which sees the users held by then", async () => {
    const lists: Id[][] = [];
    let running = 0;
    let most = 0;
    let release!: () => void;
    let held = new Promise<void>((r) => (release = r));
    const routes: SessionRoutes = {
      add: async () => {},
      remove: async () => {},
      refresh: async (_s, users) => {
        lists.push([...users]);
        most = Math.max(most, ++running);
        await held;
        running--;
      },
      lookup: async () => new Map(),
      close: async () => {},
    };
    const { server, open, welcomed } = serverOf(routes);
    open(1n);
    await waitFor(() => welcomed.has(1n), "user 1's welcome");
    // The interval's tick, then a reset's refresh and another tick while the first is under way.
    const first = server.refreshRoutes();
    await waitFor(() => lists.length === 1, "the first refresh under way");
    open(2n);
    await waitFor(() => welcomed.has(2n), "user 2's welcome");
    let asked = 0;
    const later = [server.refreshRoutes(), server.refreshRoutes()].map((p) => p.then(() => asked++));
    await new Promise((r) => setImmediate(r));
    assert.equal(lists.length, 1, "no second refresh beside the first");
    const releaseFirst = release;
    held = new Promise<void>((r) => (release = r));
    releaseFirst();
    await first;
    await waitFor(() => lists.length === 2, "one more refresh, for both that asked meanwhile");
    assert.equal(asked, 0, "they wait for the refresh that started after they asked");
    release();
    await Promise.all(later);
    assert.equal(lists.length, 2);
    assert.equal(most, 1, "never two at once");
    assert.deepStrictEqual(lists[1]!.sort(), [1n, 2n], "the second run reads who is held when it starts");
    server.drain();
  });

  it("welcomes a session whose cursor read failed once, reading it again after a pause", async () => {
    let failures = 1;
    const inbox: Inbox = {
      ...inboxKeeping([1n]),
      getCursor: async () => {
        if (failures-- > 0) throw new Error("read timed out");
        return 0n;
      },
    };
    const { server, log, closes } = openSession(inbox);
    await waitFor(() => closes.length > 0 || log.some((f) => f.kind.case === "syncBatch"), "the catch-up, or a close");
    assert.deepStrictEqual(closes, []);
    assert.deepStrictEqual(log.map((f) => f.kind.case), ["welcome", "syncBatch"]);
    server.drain();
  });

  it("reads a failed start again after a pause of its own, not in step with every session that failed with it (a failover's surge)", async () => {
    const reads = new Map<Id, number[]>();
    const inbox: Inbox = {
      ...inboxKeeping([]),
      getCursor: async (userId) => {
        const at = reads.get(userId) ?? [];
        reads.set(userId, [...at, performance.now()]);
        if (at.length === 0) throw new Error("read timed out");
        return 0n;
      },
    };
    const server = new ChatServer({ serverId: "t", inbox, channels: {} as never, submitter: {} as never });
    const users = Array.from({ length: 10 }, (_, i) => BigInt(i + 1));
    for (const userId of users) {
      server.open({ userId, deviceId: 1n, tokenExpiresAtMs: Date.now() + 60_000, encoding: "proto" }, { send: () => {}, bufferedBytes: () => 0, close: () => {} });
    }
    await waitFor(() => users.every((u) => reads.get(u)?.length === 2), "every start read again");
    const pauses = users.map((u) => reads.get(u)![1]! - reads.get(u)![0]!);
    // Each paused exactly 500 ms: the sessions a failover brought at once read again at once, as often as the store failed them.
    assert.ok(Math.max(...pauses) - Math.min(...pauses) > 25, `pauses ${pauses.map(Math.round).join(", ")} ms`);
    server.drain();
  });

  it("reads a failed catch-up again after a pause of its own, not in step with every session whose read failed with it", async () => {
    const reads = new Map<Id, number[]>();
    const kept = inboxKeeping([1n]);
    const inbox: Inbox = {
      ...kept,
      readAfter: async (userId, after, limit) => {
        const at = reads.get(userId) ?? [];
        reads.set(userId, [...at, performance.now()]);
        if (at.length === 0) throw new Error("read timed out");
        return kept.readAfter(userId, after, limit);
      },
    };
    const server = new ChatServer({ serverId: "t", inbox, channels: {} as never, submitter: {} as never });
    const users = Array.from({ length: 10 }, (_, i) => BigInt(i + 1));
    for (const userId of users) {
      server.open({ userId, deviceId: 1n, tokenExpiresAtMs: Date.now() + 60_000, encoding: "proto" }, { send: () => {}, bufferedBytes: () => 0, close: () => {} });
    }
    await waitFor(() => users.every((u) => (reads.get(u)?.length ?? 0) >= 2), "every catch-up read again");
    const pauses = users.map((u) => reads.get(u)![1]! - reads.get(u)![0]!);
    assert.ok(Math.max(...pauses) - Math.min(...pauses) > 25, `pauses ${pauses.map(Math.round).join(", ")} ms`);
    server.drain();
  });

  it("closes with 1013, not 1011, a session whose start reads keep failing, so a gateway opens it on another server", async () => {
    let heads = 0;
    const inbox: Inbox = {
      ...inboxKeeping([1n]),
      head: async () => {
        heads++;
        throw new Error("read timed out");
      },
    };
    const { server, log, closes } = openSession(inbox);
    await waitFor(() => closes.length > 0, "the close", 20_000);
    assert.deepStrictEqual(closes, [1013]);
    assert.equal(heads, 4, "read four times");
    assert.deepStrictEqual(log, [], "never welcomed");
    server.drain();
  });
});

describe("session: silence is measured on the monotonic clock", () => {
  it("a wall clock stepped forward closes no session as silent; three heartbeat intervals of silence do (1001)", async () => {
    const closes: number[] = [];
    const frames: ServerFrame[] = [];
    const server = new ChatServer({ serverId: "t", inbox: inboxKeeping([]), channels: {} as never, submitter: {} as never, limits: { heartbeatIntervalMs: 1_000 } });
    server.open({ userId: 1n, deviceId: 1n, tokenExpiresAtMs: Date.now() + 3_600_000, encoding: "proto" }, {
      send: (f) => void frames.push(fromBinary(ServerFrameSchema, f as Uint8Array)),
      bufferedBytes: () => 0,
      close: (code) => void closes.push(code),
    });
    await waitFor(() => frames.some((f) => f.kind.case === "welcome"), "the welcome");
    const sweep = () => (server as unknown as { sweep(): void }).sweep();
    const wallNow = Date.now;
    const monoNow = performance.now.bind(performance);
    try {
      Date.now = () => wallNow() + 10_000; // NTP steps the clock; no time passed
      sweep();
      assert.deepStrictEqual(closes, [], "not closed by a clock step");
      Date.now = wallNow;
      performance.now = () => monoNow() + 3_001; // three intervals and a millisecond of real silence
      sweep();
      assert.deepStrictEqual(closes, [1001]);
    } finally {
      Date.now = wallNow;
      performance.now = monoNow;
      server.drain();
    }
  });
});

describe("chat server: the idle sweep", () => {
  it("looks at a tenth of the users a tick, so no tick holds the event loop for every session, and comes round to all", async () => {
    const closes: number[] = [];
    let welcomed = 0;
    const server = new ChatServer({ serverId: "t", inbox: inboxKeeping([]), channels: {} as never, submitter: {} as never, limits: { heartbeatIntervalMs: 1_000 } });
    for (let u = 1n; u <= 20n; u++) {
      server.open({ userId: u, deviceId: 1n, tokenExpiresAtMs: Date.now() + 3_600_000, encoding: "proto" }, {
        send: (f) => void (fromBinary(ServerFrameSchema, f as Uint8Array).kind.case === "welcome" && welcomed++),
        bufferedBytes: () => 0,
        close: (code) => void closes.push(code),
      });
    }
    await waitFor(() => welcomed === 20, "the welcomes");
    const sweep = () => (server as unknown as { sweep(): void }).sweep();
    const monoNow = performance.now.bind(performance);
    try {
      performance.now = () => monoNow() + 3_001; // every session silent for three intervals
      sweep();
      assert.equal(closes.length, 2, "one tick: a tenth of the 20 users");
      for (let tick = 0; tick < 20 && closes.length < 20; tick++) sweep();
      assert.deepStrictEqual(closes, Array(20).fill(1001), "every silent session closed, each once");
    } finally {
      performance.now = monoNow;
      server.drain();
    }
  });
});

describe("session: frames pushed while it starts", () => {
  const typing = create(ServerFrameSchema, { kind: { case: "typing", value: { channelId: 9n, userId: 2n } } });

  /** A session whose start waits on the inbox until `release`, and the kinds of frame it was sent. */
  function starting(revoked?: () => Promise<boolean>) {
    const { inbox, state } = controlledInbox(0);
    let release!: () => void;
    state.gate = new Promise<void>((r) => (release = r));
    const server = new ChatServer({ serverId: "t", inbox, channels: {} as never, submitter: {} as never, revoked });
    const sent: (string | undefined)[] = [];
    const closes: number[] = [];
    const handle = server.open({ userId: 1n, deviceId: 1n, tokenExpiresAtMs: Date.now() + 60_000, encoding: "proto" }, {
      send: (f) => void sent.push(fromBinary(ServerFrameSchema, f as Uint8Array).kind.case),
      bufferedBytes: () => 0,
      close: (code) => void closes.push(code),
    });
    return { server, handle, sent, closes, release };
  }

  it("sends them after the welcome, which stays the first frame (a gateway takes any frame as the server's answer)", async () => {
    const { server, sent, release } = starting();
    server.deliverLocal(1n, [], typing);
    release();
    await waitFor(() => sent.length >= 2, "the welcome and the typing");
    assert.deepStrictEqual(sent, ["welcome", "typing"]);
    server.drain();
  });

  it("keeps a presence it holds until the welcome, even when the transport says it drained before (a gateway stream drains all its sessions at once)", async () => {
    const presence = create(ServerFrameSchema, { kind: { case: "presence", value: { presence: { userId: 2n, status: PresenceStatus.ONLINE } } } });
    const { server, handle, sent, release } = starting();
    server.deliverLocal(1n, [], presence);
    handle.drained();
    assert.deepStrictEqual(sent, [], "nothing before the welcome");
    release();
    await waitFor(() => sent.length >= 2, "the welcome and the presence");
    assert.deepStrictEqual(sent, ["welcome", "presence"]);
    server.drain();
  });

  it("sends none of them to a device its start finds signed out", async () => {
    const { server, sent, closes, release } = starting(async () => true);
    server.deliverLocal(1n, [], typing);
    release();
    await waitFor(() => closes.length > 0, "the close");
    assert.deepStrictEqual([sent, closes], [[], [4003]]);
    server.drain();
  });

  it("counts its user neither online nor reached until it is welcomed: its device may turn out signed out", async () => {
    const { server, sent, closes, release } = starting(async () => true);
    assert.deepStrictEqual([...(await server.onlineUsers([1n]))], []);
    assert.deepStrictEqual([...(await server.pushMany([{ userId: 1n, frame: typing }]))], [], "not reached, so the user is notified");
    release();
    await waitFor(() => closes.length > 0, "the close");
    assert.deepStrictEqual([sent, closes], [[], [4003]]);
    server.drain();
  });

  it("counts its user online and reached once it is welcomed", async () => {
    const { server, sent, release } = starting();
    release();
    await waitFor(() => sent.includes("welcome"), "the welcome");
    assert.deepStrictEqual([...(await server.onlineUsers([1n, 2n]))], [1n]);
    assert.deepStrictEqual([...(await server.pushMany([{ userId: 1n, frame: typing }]))], [1n]);
    server.drain();
  });
});

describe("session on a draining server", () => {
  it("is closed with 1001 at once, never welcomed: a listener still open for the drain must not hand out sessions", async () => {
    const server = new ChatServer({ serverId: "t", inbox: inboxKeeping([]), channels: {} as never, submitter: {} as never });
    server.drain();
    const sent: unknown[] = [];
    const closes: number[] = [];
    server.open({ userId: 1n, deviceId: 1n, tokenExpiresAtMs: Date.now() + 60_000, encoding: "proto" }, {
      send: (f) => void sent.push(f),
      bufferedBytes: () => 0,
      close: (code) => void closes.push(code),
    });
    assert.deepStrictEqual(closes, [1001]);
    assert.equal(server.sessionCount, 0);
    // Nothing comes later either (a start under way would send its welcome a few turns on).
    await new Promise((r) => setImmediate(r));
    assert.deepStrictEqual(sent, []);
  });
});

describe("session: a user's sessions on one server", () => {
  it("refuses one past the bound with 4029 (too many sessions, as the gateways' caps), never welcomed, and takes one again once another ended; other users are not counted", async () => {
    const server = new ChatServer({ serverId: "t", inbox: inboxKeeping([]), channels: {} as never, submitter: {} as never, limits: { maxSessionsPerUser: 3 } });
    const opened = (userId: bigint) => {
      const s = { welcomed: false, closes: [] as number[] };
      const handle = server.open({ userId, deviceId: 1n, tokenExpiresAtMs: Date.now() + 60_000, encoding: "proto" }, {
        send: (f) => void (s.welcomed ||= fromBinary(ServerFrameSchema, f as Uint8Array).kind.case === "welcome"),
        bufferedBytes: () => 0,
        close: (code) => void s.closes.push(code),
      });
      return Object.assign(s, { handle });
    };
    const mine = [opened(1n), opened(1n), opened(1n)];
    const past = opened(1n);
    assert.deepStrictEqual(past.closes, [4029]);
    const other = opened(2n);
    await waitFor(() => [...mine, other].every((s) => s.welcomed), "the sessions within the bound welcomed");
    assert.equal(past.welcomed, false);
    assert.equal(server.sessionCount, 4);
    mine[0]!.handle.closed();
    const again = opened(1n);
    await waitFor(() => again.welcomed, "a session once another of the user ended");
    assert.deepStrictEqual(again.closes, []);
    server.drain();
  });
});

/** Opens a session on `server` whose sink notes the kind of every frame sent to it. */
function openNoting(server: ChatServer, who: Parameters<ChatServer["open"]>[0]): string[] {
  const frames: string[] = [];
  server.open(who, {
    send: (f) => void frames.push(fromBinary(ServerFrameSchema, f as Uint8Array).kind.case ?? ""),
    bufferedBytes: () => 0,
    close: () => {},
  });
  return frames;
}

describe("live delivery of stored entries (pushEntries)", () => {
  const message = { messageId: 900n, channelId: 7n, seq: 3n, senderUserId: 2n, senderDeviceId: 1n, clientMsgId: "c1", text: "héllo 👋", sentAtMs: 1_764_000_000_123 };
  /** The bytes pushMany's frames made them: a ServerFrame of the entry, encoded by the codec. */
  const frameOf = (inboxSeq: bigint) => create(ServerFrameSchema, { kind: { case: "message", value: { entry: inboxEntryToProto({ inboxSeq, message }) } } });

  it("sends each user's proto and JSON sessions the frame pushMany sends, and names the users with no started session", async () => {
    const server = new ChatServer({ serverId: "t", inbox: inboxKeeping([]), channels: {} as never, submitter: {} as never });
    const sent: { encoding: string; bytes: Uint8Array | string }[] = [];
    for (const encoding of ["proto", "json"] as const) {
      server.open({ userId: 1n, deviceId: 1n, tokenExpiresAtMs: Date.now() + 60_000, encoding }, {
        send: (bytes) => void sent.push({ encoding, bytes }),
        bufferedBytes: () => 0,
        close: () => {},
      });
    }
    await waitFor(() => sent.length === 2, "both welcomes");
    sent.length = 0;
    const missed = server.pushEntries([
      { userId: 1n, entry: { inboxSeq: 1n, message } },
      { userId: 3n, entry: { inboxSeq: 9n, message } },
    ]);
    assert.deepStrictEqual([...missed], [3n], "user 3 has no session here");
    assert.equal(server.pushEntries([{ userId: 1n, entry: { inboxSeq: 2n, message } }]).size, 0, "user 1 reached");
    const proto = sent.find((s) => s.encoding === "proto")!.bytes;
    const json = sent.find((s) => s.encoding === "json")!.bytes;
    assert.deepStrictEqual(new Uint8Array(proto as Uint8Array), toBinary(ServerFrameSchema, frameOf(1n)));
    assert.equal(json, encodeServerFrame(frameOf(1n), "json"));
    assert.equal(sent.length, 4);
    server.drain();
  });
});

describe("session: sends waiting on a slow queue", () => {
  it("keeps at most maxSendsInFlight of a session's sends waiting for their acks, refusing the rest UNAVAILABLE with a retry time, and takes sends again as those are acked", async () => {
    const held: (() => void)[] = [];
    let submitted = 0;
    // The queue taking sends but acking none yet: a broker electing a leader, a publish retried.
    const submitter = {
      submit: async () => {
        const n = ++submitted;
        await new Promise<void>((r) => held.push(r));
        return { messageId: BigInt(n), duplicate: false };
      },
    };
    const limits: Partial<SessionLimits> = { maxSendsInFlight: 4, framesPerSecond: 1000, frameBurst: 1000, sendsPerSecond: 0 };
    const server = new ChatServer({ serverId: "t", inbox: inboxKeeping([]), channels: {} as never, submitter: submitter as never, limits });
    const frames: ServerFrame[] = [];
    const closes: number[] = [];
    const handle = server.open({ userId: 1n, deviceId: 1n, tokenExpiresAtMs: Date.now() + 60_000, encoding: "proto" }, {
      send: (f) => void frames.push(fromBinary(ServerFrameSchema, f as Uint8Array)),
      bufferedBytes: () => 0,
      close: (code) => void closes.push(code),
    });
    await waitFor(() => frames.some((f) => f.kind.case === "welcome"), "the welcome");
    const send = (ref: bigint) => handle.receive(frame({ ref, kind: { case: "send", value: { clientMsgId: `m${ref}`, channelId: 7n, text: "hi" } } }));
    for (let ref = 1n; ref <= 20n; ref++) send(ref);
    const refusals = () => frames.filter((f) => f.kind.case === "error");
    await waitFor(() => refusals().length === 16, `16 refusals (${refusals().length})`);
    // Each went to the queue, waiting there with its text for as long as the queue held them all.
    assert.equal(submitted, 4);
    for (const f of refusals()) {
      assert.ok(f.kind.case === "error");
      assert.equal(f.kind.value.code, ErrorCode.UNAVAILABLE);
      assert.ok(f.kind.value.retryAfterMs > 0, `retry after ${f.kind.value.retryAfterMs}`);
    }
    for (const release of held.splice(0)) release();
    await waitFor(() => frames.filter((f) => f.kind.case === "sendAck").length === 4, "the four acks");
    send(21n);
    await waitFor(() => submitted === 5, "the next send taken");
    held.splice(0).forEach((r) => r());
    await waitFor(() => frames.some((f) => f.ref === 21n && f.kind.case === "sendAck"), "its ack");
    assert.deepStrictEqual(closes, []);
    server.drain();
  });
});

describe("session: an inbox outage's warnings", () => {
  /** `count` sessions, of users 1.., on a server over `inbox`, its warnings kept. */
  function openMany(inbox: Inbox, count: number, routes?: SessionRoutes) {
    const warned: string[] = [];
    const logger = { warn: (_o: unknown, msg: string) => void warned.push(msg), error: () => {}, info: () => {}, debug: () => {} };
    const server = new ChatServer({ serverId: "t", inbox, channels: {} as never, submitter: {} as never, logger: logger as never, routes });
    const sink: SessionSink = { send: () => {}, bufferedBytes: () => 0, close: () => {} };
    for (let u = 1n; u <= BigInt(count); u++) server.open({ userId: u, deviceId: 1n, tokenExpiresAtMs: Date.now() + 60_000, encoding: "proto" }, sink);
    return { server, warned };
  }

  // At 50,000 sessions a line each was 50,000 lines in the second the store went away.
  it("warns once, not once per session, when every session's start read fails", async () => {
    let reads = 0;
    const inbox = { ...inboxKeeping([]), getCursor: () => (reads++, Promise.reject(new Error("store away"))) };
    const { server, warned } = openMany(inbox, 50);
    await waitFor(() => reads >= 50, "every session tried its start");
    assert.deepStrictEqual(warned, ["session start: a read failed"]);
    server.drain();
  });

  it("warns once, not once per session, when the routing store refuses every session's route", async () => {
    let adds = 0;
    const routes: SessionRoutes = {
      add: () => (adds++, Promise.reject(new Error("redis away"))),
      remove: async () => {},
      refresh: async () => {},
      lookup: async () => new Map(),
      close: async () => {},
    };
    let welcomed = 0;
    const inbox = { ...inboxKeeping([]), getCursor: async () => (welcomed++, 0n) };
    const { server, warned } = openMany(inbox, 50, routes);
    await waitFor(() => adds >= 50 && welcomed >= 50, "every session's route tried, and its start read");
    assert.deepStrictEqual(warned, ["could not add a route"]);
    server.drain();
  });

  it("warns once, not once per session, when every session's sync fails", async () => {
    let reads = 0;
    const inbox = { ...inboxKeeping([1n]), readAfter: () => (reads++, Promise.reject(new Error("store away"))) };
    const { server, warned } = openMany(inbox, 50);
    await waitFor(() => reads >= 50, "every session tried its sync");
    assert.deepStrictEqual(warned, ["sync failed"]);
    server.drain();
  });
});

describe("session: a frame whose store did not answer", () => {
  /** A session of user 1 in group 7 whose read positions fail with `err`, logging to `logged`. */
  async function openWithReadsFailing(err: Error) {
    const channels = {
      getMember: async () => ({ userId: 1n, readSeq: 0n }),
      advanceReadSeq: () => Promise.reject(err),
    };
    const logged: { level: string; msg: string }[] = [];
    const at = (level: string) => (_o: unknown, msg: string) => void logged.push({ level, msg });
    const logger = { warn: at("warn"), error: at("error"), info: () => {}, debug: () => {} };
    const server = new ChatServer({ serverId: "t", inbox: inboxKeeping([]), channels: channels as never, submitter: {} as never, logger: logger as never });
    const opened = await openWelcomed(server, 1n);
    const read = (ref: bigint) => opened.handle.receive(toBinary(ClientFrameSchema, create(ClientFrameSchema, { ref, kind: { case: "read", value: { channelId: 7n, seq: 5n } } })));
    return { server, read, logged, ...opened };
  }

  // SQLite's "database is locked" past busy_timeout (a checkpoint or a backup holding the file): answered INTERNAL, which clients take as final.
  it("answers an engine's timeout or lost connection UNAVAILABLE with a retry time, so the client asks again", async () => {
    const busy = new Database.SqliteError("database is locked", "SQLITE_BUSY");
    const { server, read, errors, logged } = await openWithReadsFailing(busy);
    read(1n);
    await waitFor(() => errors.length > 0, "the read answered");
    const e = errors[0]!;
    assert.deepStrictEqual(e.kind.case === "error" && [e.ref, e.kind.value.code, e.kind.value.retryAfterMs > 0], [1n, ErrorCode.UNAVAILABLE, true]);
    assert.deepStrictEqual(logged.filter((l) => l.level === "error"), []);
    server.drain();
  });

  it("still answers a bug INTERNAL, logged at error", async () => {
    const { server, read, errors, logged } = await openWithReadsFailing(new TypeError("Cannot read properties of undefined (reading 'readSeq')"));
    read(1n);
    await waitFor(() => errors.length > 0, "the read answered");
    assert.equal(errors[0]!.kind.case === "error" && errors[0]!.kind.value.code, ErrorCode.INTERNAL);
    assert.deepStrictEqual(logged.map((l) => [l.level, l.msg]), [["error", "session frame failed"]]);
    server.drain();
  });

  // During an outage every frame of every session fails: one line, not one each.
  it("warns of the outage once, not once per frame", async () => {
    const { server, read, errors, logged } = await openWithReadsFailing(new Error("Connection is closed."));
    for (let ref = 1n; ref <= 20n; ref++) read(ref);
    await waitFor(() => errors.length === 20, "every read answered");
    assert.equal(logged.length, 1);
    server.drain();
  });
});
