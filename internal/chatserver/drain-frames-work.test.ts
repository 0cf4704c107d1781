import assert from "node:assert/strict";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { ClientFrameSchema, ServerFrameSchema, type ServerFrame } from "../../gen/es/chat/v1/session_pb.js";
import type { Inbox } from "../messages/inbox.js";
import { CloseCode } from "../model/close-codes.js";
import { MemoryPresenceStore } from "../presence/memory.js";
import type { PresenceStore } from "../presence/port.js";
import { PresenceTracker } from "../presence/tracker.js";
import type { Id } from "../model/types.js";
import { waitFor } from "../../test/support/wait.js";
import { ChatServer, type ChatServerDeps } from "./server.js";
import type { SessionHandle } from "./port.js";

/** Calls held until the test lets each go: `entered` counts those that came, `release` lets the oldest held one answer. */
function gate() {
  const held: (() => void)[] = [];
  let entered = 0;
  return {
    get entered() {
      return entered;
    },
    /** Resolves when released; what the store does after it is the write landing. */
    pass: () => {
      entered++;
      return new Promise<void>((resolve) => held.push(resolve));
    },
    release: () => held.shift()?.(),
  };
}

/** An inbox of entries 1..`count`, cursor 0, whose cursor writes the test decides. */
function inboxOf(count: number, advanceCursor: Inbox["advanceCursor"]): Inbox {
  const entry = (inboxSeq: bigint) => ({
    inboxSeq,
    message: { messageId: 1000n + inboxSeq, channelId: 7n, seq: inboxSeq, senderUserId: 2n, senderDeviceId: 1n, clientMsgId: `m${inboxSeq}`, text: "hi", sentAtMs: 0 },
  });
  const seqs = Array.from({ length: count }, (_, i) => BigInt(i + 1));
  return {
    append: () => Promise.reject(new Error("not in this test")),
    readAfter: async (_u: Id, after: bigint, limit: number) => seqs.filter((s) => s > after).slice(0, limit).map(entry),
    head: async () => BigInt(count),
    getCursor: async () => 0n,
    advanceCursor,
    dropCursor: async () => {},
    emptyTexts: async () => {},
  };
}

/** A session of user 1 on `server`, welcomed and sent every entry of its inbox (`entries`). */
async function openCaughtUp(server: ChatServer, entries: number): Promise<{ handle: SessionHandle; frames: ServerFrame[] }> {
  const frames: ServerFrame[] = [];
  const handle = server.open(
    { userId: 1n, deviceId: 1n, tokenExpiresAtMs: Date.now() + 60_000, encoding: "proto" },
    { send: (f) => void frames.push(fromBinary(ServerFrameSchema, f as Uint8Array)), bufferedBytes: () => 0, close: () => {} },
  );
  const sent = () => frames.flatMap((f) => (f.kind.case === "syncBatch" ? f.kind.value.entries : [])).length;
  await waitFor(() => frames.some((f) => f.kind.case === "welcome") && sent() === entries, "the session welcomed and caught up");
  return { handle, frames };
}

const frame = (init: Parameters<typeof create<typeof ClientFrameSchema>>[1]) => toBinary(ClientFrameSchema, create(ClientFrameSchema, init));

/** Whether `p` is still pending once the event loop has gone round (a drain with nothing to wait for resolves in a microtask). */
async function pendingAfterATurn(p: Promise<unknown>): Promise<boolean> {
  let settled = false;
  void p.then(() => (settled = true));
  for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
  return !settled;
}

/**
 * The owner of a ChatServer closes its stores once drain resolves (cmd/chat-server, chatd). A session's
 * stream ends first (its gateway moved it), and the work its last frames started was still running:
 * a read receipt's position or a cursor written after the stores closed failed, and nothing writes it again.
 */
describe("ChatServer.drain: the work its sessions' frames started", function () {
  this.timeout(10_000);

  const members = { getMember: async () => ({ userId: 1n, readSeq: 0n }), listMembers: async () => [{ userId: 1n }, { userId: 2n }] };

  it("waits for a read receipt whose position is being written, and resolves once it is stored and told", async () => {
    const writes = gate();
    const stored: bigint[] = [];
    const told: bigint[] = [];
    let storesClosed = false;
    const channels = {
      ...members,
      getChannel: async () => ({ channelId: 7n, kind: "group", title: "g", createdAtMs: 1, createdBy: 2n }),
      advanceReadSeq: async (_c: Id, _u: Id, seq: bigint) => {
        await writes.pass();
        assert.ok(!storesClosed, "the position written after the stores closed");
        stored.push(seq);
        return { readSeq: seq, newest: undefined };
      },
    };
    const directory = {
      pushToUsers: async (userIds: Id[], f: ServerFrame) => {
        assert.ok(!storesClosed, "the receipt told after the stores closed");
        if (f.kind.case === "receipt") told.push(...userIds);
      },
    };
    const server = new ChatServer({ serverId: "t", inbox: inboxOf(0, async () => {}), channels: channels as never, submitter: {} as never, directory: directory as never });
    const { handle } = await openCaughtUp(server, 0);
    handle.receive(frame({ ref: 1n, kind: { case: "read", value: { channelId: 7n, seq: 5n } } }));
    await waitFor(() => writes.entered === 1, "the position's write started");
    // As the gateway stream ends: the session closes with its receipt still being handled.
    handle.closed();
    const drained = server.drain().then((done) => ((storesClosed = true), done));
    assert.ok(await pendingAfterATurn(drained), "drain resolved with the receipt's write held");
    writes.release();
    assert.equal(await drained, true);
    assert.deepStrictEqual([stored, told], [[5n], [1n, 2n]]);
  });

  it("waits for a cursor write, and the newer ack that waited behind it, once the session closed", async () => {
    const writes = gate();
    const cursors: bigint[] = [];
    let storesClosed = false;
    const inbox = inboxOf(2, async (_u: Id, _d: Id, seq: bigint) => {
      await writes.pass();
      assert.ok(!storesClosed, "a cursor written after the stores closed");
      cursors.push(seq);
    });
    const server = new ChatServer({ serverId: "t", inbox, channels: {} as never, submitter: {} as never });
    const { handle } = await openCaughtUp(server, 2);
    handle.receive(frame({ ref: 1n, kind: { case: "deliveryAck", value: { inboxSeq: 1n } } }));
    await waitFor(() => writes.entered === 1, "the first cursor's write started");
    // Waits behind the first write: one cursor write at a time.
    handle.receive(frame({ ref: 2n, kind: { case: "deliveryAck", value: { inboxSeq: 2n } } }));
    handle.closed();
    const drained = server.drain().then((done) => ((storesClosed = true), done));
    assert.ok(await pendingAfterATurn(drained), "drain resolved with a cursor write held");
    writes.release();
    await waitFor(() => writes.entered === 2, "the newer cursor's write started");
    assert.ok(await pendingAfterATurn(drained), "drain resolved between the two writes");
    writes.release();
    assert.equal(await drained, true);
    assert.deepStrictEqual(cursors, [1n, 2n]);
  });

  it("waits for a send being submitted", async () => {
    const submits = gate();
    const submitted: string[] = [];
    let storesClosed = false;
    const submitter = {
      submit: async (_who: unknown, m: { clientMsgId: string }) => {
        await submits.pass();
        assert.ok(!storesClosed, "a send published after the queue closed");
        submitted.push(m.clientMsgId);
        return { messageId: 1n, duplicate: false };
      },
    };
    const server = new ChatServer({ serverId: "t", inbox: inboxOf(0, async () => {}), channels: {} as never, submitter: submitter as never });
    const { handle } = await openCaughtUp(server, 0);
    handle.receive(frame({ ref: 1n, kind: { case: "send", value: { channelId: 7n, clientMsgId: "c1", text: "hi" } } }));
    await waitFor(() => submits.entered === 1, "the send submitted");
    handle.closed();
    const drained = server.drain().then((done) => ((storesClosed = true), done));
    assert.ok(await pendingAfterATurn(drained), "drain resolved with a send under way");
    submits.release();
    assert.equal(await drained, true);
    assert.deepStrictEqual(submitted, ["c1"]);
  });

  /** A server whose sessions' starts wait on their cursor read (`reads`), and whose read positions land in `stored`. */
  function startingServer() {
    const reads = gate();
    const stored: bigint[] = [];
    let storesClosed = false;
    const channels = {
      ...members,
      getChannel: async () => ({ channelId: 7n, kind: "group", title: "g", createdAtMs: 1, createdBy: 2n }),
      advanceReadSeq: async (_c: Id, _u: Id, seq: bigint) => {
        assert.ok(!storesClosed, "the position written after the stores closed");
        stored.push(seq);
        return { readSeq: seq, newest: undefined };
      },
    };
    const inbox = { ...inboxOf(0, async () => {}), getCursor: () => reads.pass().then(() => 0n) };
    const server = new ChatServer({ serverId: "t", inbox, channels: channels as never, submitter: {} as never, directory: { pushToUsers: async () => {} } as never });
    const handle = server.open(
      { userId: 1n, deviceId: 1n, tokenExpiresAtMs: Date.now() + 60_000, encoding: "proto" },
      { send: () => {}, bufferedBytes: () => 0, close: () => {} },
    );
    const drain = () => server.drain().then((done) => ((storesClosed = true), done));
    return { server, handle, reads, stored, drain };
  }

  it("handles a read receipt held for the welcome of a session whose stream ended while it started, and waits for it", async () => {
    const { handle, reads, stored, drain } = startingServer();
    await waitFor(() => reads.entered === 1, "the start reading the cursor");
    // Sent right after the socket opened: held until the welcome.
    handle.receive(frame({ ref: 1n, kind: { case: "read", value: { channelId: 7n, seq: 5n } } }));
    handle.receive(frame({ ref: 2n, kind: { case: "heartbeat", value: {} } }));
    // The gateway moves the session (this server left the registry): its stream ends before the welcome.
    handle.closed();
    const drained = drain();
    assert.ok(await pendingAfterATurn(drained), "drain resolved with a receipt held for a start still reading");
    reads.release();
    assert.equal(await drained, true);
    assert.deepStrictEqual(stored, [5n]);
  });

  it("handles no frame held by a session refused while it started (its device signed out)", async () => {
    const { server, handle, reads, stored, drain } = startingServer();
    await waitFor(() => reads.entered === 1, "the start reading the cursor");
    handle.receive(frame({ ref: 1n, kind: { case: "read", value: { channelId: 7n, seq: 5n } } }));
    await server.closeDevice(1n, 1n, CloseCode.loggedOut, "signed out");
    const drained = drain();
    reads.release();
    assert.equal(await drained, true);
    assert.deepStrictEqual(stored, []);
  });

  it("leaves a closed session's 'left' write to the presence tracker's stop, which the owners await after the drain and before the store closes", async () => {
    const touches = gate();
    const store = new MemoryPresenceStore();
    let storeClosed = false;
    const left: bigint[] = [];
    const gated: PresenceStore = Object.assign(Object.create(store) as PresenceStore, {
      touch: async (...args: Parameters<PresenceStore["touch"]>) => {
        if (!args[4]?.ifAlive) return store.touch(...args);
        await touches.pass();
        assert.ok(!storeClosed, "the device's 'left' written after the presence store closed");
        left.push(args[1]);
        return store.touch(...args);
      },
    });
    const tracker = new PresenceTracker({ store: gated, audience: async () => [], directory: { pushToUsers: async () => {} }, graceMs: 60_000, sweepIntervalMs: 0 });
    const server = new ChatServer({ serverId: "t", inbox: inboxOf(0, async () => {}), channels: {} as never, submitter: {} as never, presence: tracker });
    await openCaughtUp(server, 0);
    await tracker.idle();
    await server.drain();
    await waitFor(() => touches.entered === 1, "the device's 'left' write started");
    // cmd/chat-server and chatd: the tracker stops, waiting for its writes, before the store closes.
    const stopped = tracker.stop().then(() => (storeClosed = true));
    assert.ok(await pendingAfterATurn(stopped), "the tracker stopped with the 'left' write under way");
    touches.release();
    await stopped;
    assert.deepStrictEqual(left, [1n]);
  });

  it("gives up after its bound on work that never ends, says so, and resolves false", async () => {
    const writes = gate();
    const warned: unknown[] = [];
    const logger = { warn: (o: unknown, msg: string) => void warned.push([o, msg]), error: () => {}, info: () => {}, debug: () => {} };
    const deps: ChatServerDeps = {
      serverId: "t",
      inbox: inboxOf(1, () => writes.pass()),
      channels: {} as never,
      submitter: {} as never,
      logger: logger as never,
    };
    const server = new ChatServer(deps);
    const { handle } = await openCaughtUp(server, 1);
    handle.receive(frame({ ref: 1n, kind: { case: "deliveryAck", value: { inboxSeq: 1n } } }));
    await waitFor(() => writes.entered === 1, "the cursor's write started");
    const startedAt = performance.now();
    assert.equal(await server.drain("server shutting down", undefined, 100), false);
    assert.ok(performance.now() - startedAt >= 90, "gave up before its bound");
    assert.deepStrictEqual(warned, [[{ frames: 1, withinMs: 100 }, "draining: frames' work not done in time; it may fail as the stores close"]]);
    writes.release();
  });

  it("resolves at once with no work under way", async () => {
    const server = new ChatServer({ serverId: "t", inbox: inboxOf(0, async () => {}), channels: {} as never, submitter: {} as never });
    await openCaughtUp(server, 0);
    assert.equal(await server.drain("server shutting down", undefined, 60_000), true);
  });
});
