import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { ServerFrameSchema } from "../../gen/es/chat/v1/session_pb.js";
import type { SessionRoutes } from "../routing/port.js";
import type { ChatServerClients } from "./client-pool.js";
import type { BatchOutcome } from "./delivery-stream.js";
import { mock } from "node:test";
import { drain, settled } from "../../test/support/settle.js";
import { PushFailedError } from "../delivery/port.js";
import { chunksOf, RoutedSessionDirectory } from "./routed-directory.js";

const sized = (userId: number, bytes: number) => ({ userId: BigInt(userId), bytes });
const sizeOf = (d: { bytes: number }) => d.bytes;

describe("delivery batches split by size", () => {
  it("keeps a group message of long texts to a hundred members under the budget per batch, in order", () => {
    const all = Array.from({ length: 100 }, (_, i) => sized(i, 400_000));
    const chunks = chunksOf(all, 2 * 1024 * 1024, sizeOf);
    assert.ok(chunks.length >= 20, `${chunks.length} batches`);
    for (const c of chunks) assert.ok(c.length >= 1 && c.length * 400_000 <= 2 * 1024 * 1024);
    assert.deepStrictEqual(chunks.flat(), all);
  });

  it("sends small deliveries in one batch, and a single oversized one alone", () => {
    const small = Array.from({ length: 500 }, (_, i) => sized(i, 60));
    assert.equal(chunksOf(small, 2 * 1024 * 1024, sizeOf).length, 1);
    const huge = [sized(1, 3_000_000), sized(2, 60)];
    assert.deepStrictEqual(chunksOf(huge, 1024, sizeOf).map((c) => c.length), [1, 1]);
  });
});

/** A live delivery of inbox entry `inboxSeq`. */
const entry = (inboxSeq: bigint, text = "hi") =>
  create(ServerFrameSchema, { kind: { case: "message", value: { entry: { inboxSeq, message: { text } } } } });

describe("RoutedSessionDirectory", () => {
  // Second tries wait on setTimeout: faked, one is due when the test moves the clock, and "no
  // more" is checked past every timer that could still fire, not after a guess at how long.
  beforeEach(() => mock.timers.enable({ apis: ["setTimeout"] }));
  afterEach(() => mock.timers.reset());

  it("counts as reached only users on a chat server that queued their frame on a session: not those routed only to one gone, failing, or without their sessions", async () => {
    const routes = { lookup: async () => new Map([[1n, ["a"]], [2n, ["b"]], [3n, ["gone"]], [4n, ["a", "b"]], [6n, ["restarted"]], [7n, ["a"]]]) } as unknown as SessionRoutes;
    const stream = (outcome: BatchOutcome) => ({ send: async () => outcome });
    const servers = { a: stream({ sessions: 2, missed: [7n] }), b: stream({ failed: "broken" }), restarted: stream({ sessions: 0, missed: [6n] }) };
    const clients = { deliveries: (id: string) => servers[id as keyof typeof servers] } as unknown as ChatServerClients;
    const directory = new RoutedSessionDirectory(routes, clients);
    const frame = create(ServerFrameSchema, { kind: { case: "heartbeatAck", value: {} } });
    const reached = await directory.pushMany([1n, 2n, 3n, 4n, 5n, 6n, 7n].map((userId) => ({ userId, frame })));
    assert.deepStrictEqual([...reached].sort(), [1n, 4n]);
  });

  it("rejects a presence push with the users whose chat server did not take it or left the registry, not those reached elsewhere, routed nowhere, or without sessions", async () => {
    const routes = { lookup: async () => new Map([[1n, ["a"]], [2n, ["b"]], [3n, ["gone"]], [4n, ["a", "b"]], [6n, ["restarted"]]]) } as unknown as SessionRoutes;
    const stream = (outcome: BatchOutcome) => ({ send: async () => outcome });
    const servers = { a: stream({ sessions: 2, missed: [] }), b: stream({ failed: "timeout" }), restarted: stream({ sessions: 0, missed: [6n] }) };
    const clients = { deliveries: (id: string) => servers[id as keyof typeof servers] } as unknown as ChatServerClients;
    const directory = new RoutedSessionDirectory(routes, clients);
    const frame = create(ServerFrameSchema, { kind: { case: "presence", value: {} } });
    const items = [1n, 2n, 3n, 4n, 5n, 6n].map((userId) => ({ userId, frame }));
    await assert.rejects(directory.pushPresence(items), (err: PushFailedError) => (assert.deepStrictEqual([...err.userIds].sort(), [2n, 3n]), true));
    servers.b = stream({ sessions: 1, missed: [] });
    const moved = items.filter((i) => i.userId !== 3n);
    assert.deepStrictEqual([...(await directory.pushPresence(moved))].sort(), [1n, 2n, 4n]);
  });

  it("sends a batch that failed once more a moment later, without waiting for it, and no more than once", async () => {
    const routes = { lookup: async () => new Map([[1n, ["a"]], [2n, ["b"]]]) } as unknown as SessionRoutes;
    const sent: Record<string, bigint[][]> = { a: [], b: [] };
    // a times out once, then takes it; b fails every time.
    const outcomes: Record<string, BatchOutcome[]> = { a: [{ failed: "timeout" }, { sessions: 1, missed: [] }], b: [{ failed: "busy" }, { failed: "broken" }, { failed: "broken" }] };
    const stream = (id: string) => ({
      send: async (chunk: { userId: bigint }[]) => {
        sent[id]!.push(chunk.map((d) => d.userId));
        return outcomes[id]!.shift()!;
      },
    });
    const servers = { a: stream("a"), b: stream("b") };
    const clients = { deliveries: (id: string) => servers[id as keyof typeof servers] } as unknown as ChatServerClients;
    const directory = new RoutedSessionDirectory(routes, clients, undefined, { afterMs: 10 });
    const reached = await directory.pushMany([1n, 2n].map((userId) => ({ userId, frame: entry(1n) })));
    assert.deepStrictEqual([...reached], [], "neither is reached now: both are notified");
    assert.deepStrictEqual(sent, { a: [[1n]], b: [[2n]] }, "the push did not wait for the second try");
    mock.timers.tick(9);
    await drain();
    assert.deepStrictEqual(sent, { a: [[1n]], b: [[2n]] }, "no second try before its moment");
    mock.timers.tick(1);
    await settled(() => sent.a!.length === 2 && sent.b!.length === 2, "each batch sent once more");
    mock.timers.tick(60_000);
    await drain();
    assert.deepStrictEqual(sent, { a: [[1n], [1n]], b: [[2n], [2n]] }, "and no more");
  });

  it("sends no failed batch again while too many bytes of others wait for it", async () => {
    const routes = { lookup: async () => new Map([[1n, ["a"]]]) } as unknown as SessionRoutes;
    let sends = 0;
    const clients = { deliveries: () => ({ send: async () => (sends++, { failed: "busy" }) }) } as unknown as ChatServerClients;
    // Each batch is a text of 100 bytes and some framing: two fit under 300, three do not.
    const directory = new RoutedSessionDirectory(routes, clients, undefined, { afterMs: 10, maxHeldBytes: 300 });
    for (const seq of [1n, 2n, 3n]) await directory.pushMany([{ userId: 1n, frame: entry(seq, "x".repeat(100)) }]);
    mock.timers.tick(10);
    await settled(() => sends >= 5, "the second tries");
    mock.timers.tick(60_000);
    await drain();
    assert.equal(sends, 5, "three batches and two second tries");
  });

  it("sends no presence or channel event again: a second try landing after a newer event would undo it", async () => {
    const routes = { lookup: async () => new Map([[1n, ["a"]]]) } as unknown as SessionRoutes;
    const sent: number[] = [];
    const clients = { deliveries: () => ({ send: async (chunk: unknown[]) => (sent.push(chunk.length), { failed: "timeout" }) }) } as unknown as ChatServerClients;
    const directory = new RoutedSessionDirectory(routes, clients, undefined, { afterMs: 1 });
    const presence = create(ServerFrameSchema, { kind: { case: "presence", value: { presence: { userId: 2n } } } });
    await directory.pushMany([{ userId: 1n, frame: presence }]);
    await directory.pushMany([{ userId: 1n, frame: presence }, { userId: 1n, frame: entry(4n) }]);
    mock.timers.tick(1);
    await settled(() => sent.length === 3, "the entry's second try");
    mock.timers.tick(60_000);
    await drain();
    assert.deepStrictEqual(sent, [1, 2, 1], "the entry alone, once");
  });

  it("once closed holds no second try and sends none, those waiting and those failing after", async () => {
    const routes = { lookup: async () => new Map([[1n, ["a"]]]) } as unknown as SessionRoutes;
    let sends = 0;
    let answer: (o: BatchOutcome) => void = () => {};
    const clients = {
      deliveries: () => ({ send: () => (sends++, sends === 2 ? new Promise<BatchOutcome>((r) => (answer = r)) : Promise.resolve({ failed: "busy" } as BatchOutcome)) }),
    } as unknown as ChatServerClients;
    const directory = new RoutedSessionDirectory(routes, clients, undefined, { afterMs: 30 });
    await directory.pushMany([{ userId: 1n, frame: entry(1n) }]);
    // The second batch is still on its way when the directory closes, and fails after.
    const late = directory.pushMany([{ userId: 1n, frame: entry(2n) }]);
    await settled(() => sends === 2, "the second batch sent");
    assert.ok(directory.heldForRedelivery > 0, "the first batch waits for its second try");
    directory.close();
    assert.equal(directory.heldForRedelivery, 0, "a closed directory holds nothing");
    answer({ failed: "timeout" });
    await late;
    assert.equal(directory.heldForRedelivery, 0, "nor takes what fails after");
    mock.timers.tick(60_000);
    await drain();
    assert.equal(sends, 2, "and sends nothing more");
  });

  it("forgets blocks on a best-effort basis: resolves when the routing table cannot be read", async () => {
    const routes = { lookup: async () => Promise.reject(new Error("redis away")) } as unknown as SessionRoutes;
    await new RoutedSessionDirectory(routes, {} as ChatServerClients).forgetBlocks([{ userId: 1n, otherUserId: 2n }]);
  });

  it("closes a device on every chat server routed for its user and resolves to the sessions they closed, a failing server counting none", async () => {
    const routes = { lookup: async () => new Map([[1n, ["a", "b", "failing", "gone"]]]) } as unknown as SessionRoutes;
    const asked: string[] = [];
    const client = (id: string, answer: { sessions: number } | Error) => ({
      closeDeviceSessions: (req: { deviceId: bigint; code: number }, _md: unknown, _opts: unknown, cb: (err: Error | null, res?: { sessions: number }) => void) => {
        asked.push(`${id}:${req.deviceId}:${req.code}`);
        setImmediate(() => (answer instanceof Error ? cb(answer) : cb(null, answer)));
      },
    });
    const servers = { a: client("a", { sessions: 2 }), b: client("b", { sessions: 1 }), failing: client("failing", new Error("deadline exceeded")) };
    const clients = { get: (id: string) => servers[id as keyof typeof servers] } as unknown as ChatServerClients;
    const warnings: string[] = [];
    const logger = { warn: (_o: unknown, msg: string) => void warnings.push(msg), debug: () => {} } as never;
    const closed = await new RoutedSessionDirectory(routes, clients, logger).closeDevice(1n, 7n, 4003, "signed out");
    assert.equal(closed, 3);
    assert.deepStrictEqual(asked.sort(), ["a:7:4003", "b:7:4003", "failing:7:4003"]);
    assert.equal(warnings.length, 1, "the failing server is logged, not passed over in silence");
  });

  it("counts as online only users routed to a chat server live in the registry, not those whose only server is gone", async () => {
    const routes = { lookup: async () => new Map([[1n, ["a"]], [2n, ["gone"]], [3n, ["gone", "a"]]]) } as unknown as SessionRoutes;
    const clients = { get: (id: string) => (id === "a" ? {} : undefined) } as unknown as ChatServerClients;
    const online = await new RoutedSessionDirectory(routes, clients).onlineUsers([1n, 2n, 3n, 4n]);
    assert.deepStrictEqual([...online].sort(), [1n, 3n]);
  });
});
