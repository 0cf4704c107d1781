import assert from "node:assert/strict";
import type { UserDelivery } from "../../gen/ts-proto/chat/internal/v1/chat_server.js";
import { create } from "@bufbuild/protobuf";
import { ServerFrameSchema } from "../../gen/es/chat/v1/session_pb.js";
import type { SessionRoutes } from "../routing/port.js";
import type { ChatServerClients } from "./client-pool.js";
import { chunksOf, RoutedSessionDirectory } from "./routed-directory.js";

const delivery = (userId: number, text: string): UserDelivery => ({
  userId: BigInt(userId),
  deviceIds: [],
  frame: { ref: 0n, kind: { $case: "message", value: { entry: { inboxSeq: 1n, message: { text } as never } } } } as never,
});

describe("Deliver calls split by size", () => {
  it("keeps a group message of long texts to a hundred members under the budget per call, in order", () => {
    const text = "x".repeat(99_999);
    const all = Array.from({ length: 100 }, (_, i) => delivery(i, text));
    const chunks = chunksOf(all, 2 * 1024 * 1024);
    assert.ok(chunks.length >= 15, `${chunks.length} calls`);
    for (const c of chunks) assert.ok(c.length >= 1 && c.length * 300_000 <= 2 * 1024 * 1024 + 300_064);
    assert.deepStrictEqual(chunks.flat(), all);
  });

  it("sends small deliveries in one call, and a single oversized one alone", () => {
    const small = Array.from({ length: 500 }, (_, i) => delivery(i, "hi"));
    assert.equal(chunksOf(small, 2 * 1024 * 1024).length, 1);
    const huge = [delivery(1, "y".repeat(1_000_000)), delivery(2, "hi")];
    assert.deepStrictEqual(chunksOf(huge, 1024).map((c) => c.length), [1, 1]);
  });
});

describe("RoutedSessionDirectory", () => {
  it("counts as reached only users on a chat server that took the Deliver on a session: not those routed only to one gone, failing or without their sessions", async () => {
    const routes = { lookup: async () => new Map([[1n, ["a"]], [2n, ["b"]], [3n, ["gone"]], [4n, ["a", "b"]], [6n, ["restarted"]]]) } as unknown as SessionRoutes;
    const client = (answer: Error | { sessions: number }) => ({
      deliver: (_req: unknown, _md: unknown, _opts: unknown, cb: (err: Error | null, res?: { sessions: number }) => void) =>
        answer instanceof Error ? cb(answer) : cb(null, answer),
    });
    const servers = { a: client({ sessions: 2 }), b: client(new Error("UNAVAILABLE")), restarted: client({ sessions: 0 }) };
    const clients = { get: (id: string) => servers[id as keyof typeof servers] } as unknown as ChatServerClients;
    const directory = new RoutedSessionDirectory(routes, clients);
    const frame = create(ServerFrameSchema, { kind: { case: "heartbeatAck", value: {} } });
    const reached = await directory.pushMany([1n, 2n, 3n, 4n, 5n, 6n].map((userId) => ({ userId, frame })));
    assert.deepStrictEqual([...reached].sort(), [1n, 4n]);
  });

  it("counts as online only users routed to a chat server live in the registry, not those whose only server is gone", async () => {
    const routes = { lookup: async () => new Map([[1n, ["a"]], [2n, ["gone"]], [3n, ["gone", "a"]]]) } as unknown as SessionRoutes;
    const clients = { get: (id: string) => (id === "a" ? {} : undefined) } as unknown as ChatServerClients;
    const online = await new RoutedSessionDirectory(routes, clients).onlineUsers([1n, 2n, 3n, 4n]);
    assert.deepStrictEqual([...online].sort(), [1n, 3n]);
  });
});
