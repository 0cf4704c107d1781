import { strict as assert } from "node:assert";
import type { InboxEntry } from "../../gen/es/chat/v1/types_pb.js";
import { waitFor } from "../support/wait.js";
import { ScriptedSocket } from "./fake-browser.js";

// The web client's realtime session in Node, on a scripted WebSocket.
const stored = new Map<string, string>();
const browserGlobals = {
  localStorage: { getItem: (k: string) => stored.get(k) ?? null, setItem: (k: string, v: string) => void stored.set(k, v), removeItem: (k: string) => void stored.delete(k) },
  window: { addEventListener() {}, removeEventListener() {}, setTimeout, clearTimeout, setInterval: () => 0 },
  location: { href: "http://127.0.0.1/", protocol: "http:", host: "127.0.0.1", origin: "http://127.0.0.1" },
  WebSocket: ScriptedSocket,
};
let RealtimeSession: typeof import("../../web/src/session.js").RealtimeSession;

describe("web: the realtime session", () => {
  before(async () => {
    Object.assign(globalThis, browserGlobals);
    ({ RealtimeSession } = await import("../../web/src/session.js"));
  });
  after(() => {
    for (const name of Object.keys(browserGlobals)) delete (globalThis as Record<string, unknown>)[name];
  });

  it("asks again from its own position when another tab of the device moved the device's cursor on while it was away", async () => {
    const auth = { current: { deviceId: "9", accessToken: "t" }, accessToken: async () => "t" };
    const taken: bigint[] = [];
    const handlers = new Proxy({}, { get: (_t, name) => (name === "entries" ? (es: InboxEntry[]) => taken.push(...es.map((e) => e.inboxSeq)) : () => undefined) });
    const session = new RealtimeSession(auth as never, handlers as never, "ws://127.0.0.1/ws");
    const entry = (inboxSeq: bigint) => ({ inboxSeq, message: { channelId: 1n, seq: inboxSeq } });
    const before = ScriptedSocket.all.length;
    const sockets = () => ScriptedSocket.all.slice(before);
    try {
      session.start();
      await waitFor(() => sockets().length === 1, "the first socket");
      sockets()[0]!.push({ kind: { case: "welcome", value: { deviceCursor: 0n, headInboxSeq: 0n } } });
      sockets()[0]!.push({ kind: { case: "message", value: { entry: entry(1n) } } });
      sockets()[0]!.onclose!({ code: 1006, reason: "" });
      // Meanwhile another tab took 2 to 5 and acked them: the device's cursor is 5.
      await waitFor(() => sockets().length === 2, "the reconnect");
      const socket = sockets()[1]!;
      socket.push({ kind: { case: "welcome", value: { deviceCursor: 5n, headInboxSeq: 6n } } });
      const sync = socket.frames().find((f) => f.kind.case === "sync");
      assert.ok(sync && sync.kind.case === "sync", "a SyncRequest");
      assert.equal(sync.kind.value.afterInboxSeq, 1n);
      // The server's own catch-up from the device's cursor, sent before it read the request, is left for the answer.
      socket.push({ kind: { case: "syncBatch", value: { entries: [entry(6n)], hasMore: false } } });
      socket.push({ kind: { case: "message", value: { entry: entry(7n) } } });
      socket.push({ ref: sync.ref, kind: { case: "syncBatch", value: { entries: [2n, 3n, 4n, 5n, 6n, 7n].map(entry), hasMore: false } } });
      socket.push({ kind: { case: "message", value: { entry: entry(8n) } } });
      assert.deepEqual(taken, [1n, 2n, 3n, 4n, 5n, 6n, 7n, 8n]);
    } finally {
      session.stop();
    }
  });
});
