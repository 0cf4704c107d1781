// `follow` of chat-cli in this process, against a stand-in gateway: what it keeps in mind of what it printed.
import assert from "node:assert/strict";
import { create, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import type WebSocket from "ws";
import { ServerFrameSchema } from "../../gen/es/chat/v1/session_pb.js";
import { MessageSchema, type Message } from "../../gen/es/chat/v1/types_pb.js";
import { FollowMemory, follow } from "../../internal/cli/follow.js";
import { waitFor } from "../support/wait.js";
import { standInSession, startStandInGateway, type StandInGateway } from "./stand-in-gateway.js";

const CHANNEL = 7n;
const PEER = 99n;

describe("chat-cli follow's memory of what it printed", function () {
  this.timeout(60_000);
  let gateway: StandInGateway;
  let url: string;
  let sockets: WebSocket[];
  let stop: AbortController;
  let following: Promise<void>;

  beforeEach(async () => {
    gateway = await startStandInGateway();
    ({ url, sockets } = gateway);
  });
  afterEach(async () => {
    stop?.abort();
    await following?.catch(() => undefined);
    await gateway.close();
  });

  it("keeps a bounded window of it through thousands of messages and changes, and prints nothing twice when a reconnect replays them", async () => {
    const limit = 50;
    const memory = new FollowMemory(limit);
    const lines: string[] = [];
    stop = new AbortController();
    following = follow(standInSession(), {
      channelId: CHANNEL,
      afterSeq: 0n,
      signal: stop.signal,
      wsUrl: url,
      memory,
      print: async (m) => void lines.push(`#${m.seq} ${m.text}`),
      printChange: async (ch) => void lines.push(`${ch.reaction ? "☺" : ch.deleted ? "✗" : "✎"} #${ch.targetSeq} ${ch.text}`),
      status: () => {},
    });
    await waitFor(() => sockets.length === 1, "the connection");

    // Each message, then an edit of it and a reaction to it: all made after following began, all news.
    const inbox: Message[] = [];
    let changeId = 1_000_000n;
    const n = 20 * limit;
    for (let seq = 1n; seq <= BigInt(n); seq++) {
      inbox.push(message({ messageId: seq, seq, text: `m${seq}` }));
      inbox.push(message({ messageId: changeId++, targetSeq: seq, text: `e${seq}` }));
      inbox.push(message({ messageId: changeId++, targetSeq: seq, reaction: true, text: "👍" }));
    }
    const bring = (socket: WebSocket, from: number, to: number) => {
      const entries = inbox.slice(from, to).map((m, i) => ({ inboxSeq: BigInt(from + i + 1), message: m }));
      for (let i = 0; i < entries.length; i += 200) {
        socket.send(toBinary(ServerFrameSchema, create(ServerFrameSchema, { kind: { case: "syncBatch", value: { entries: entries.slice(i, i + 200) } } })));
      }
    };
    bring(sockets[0]!, 0, inbox.length);
    await waitFor(() => lines.length === inbox.length, `every message and change printed (${lines.length} of ${inbox.length})`);
    // One entry a message and one a change, all kept, was 3,000 here and grew with every one.
    assert.ok(memory.printed.size <= limit, `${memory.printed.size} printed messages kept`);
    assert.ok(memory.changes.size <= limit, `${memory.changes.size} printed changes kept`);

    // The ack of the last entries lost with the connection: the next session brings them again.
    sockets[0]!.close(1011, "restarting");
    await waitFor(() => sockets.length === 2, "the reconnect");
    const replayed = Math.floor(limit / 3) * 3;
    bring(sockets[1]!, inbox.length - replayed, inbox.length);
    // Then news: a message, and changes to one printed long ago (past the window) and to a recent one.
    const last = BigInt(n);
    const news = [
      message({ messageId: last + 1n, seq: last + 1n, text: "new" }),
      message({ messageId: changeId++, targetSeq: 1n, text: "edited long after" }),
      message({ messageId: changeId++, targetSeq: last, reaction: true, text: "🎉" }),
    ];
    const entries = news.map((m, i) => ({ inboxSeq: BigInt(inbox.length + i + 1), message: m }));
    sockets[1]!.send(toBinary(ServerFrameSchema, create(ServerFrameSchema, { kind: { case: "syncBatch", value: { entries } } })));
    // Printed in order: once the last news is out, a replayed line printed again would be too.
    await waitFor(() => lines.at(-1) === `☺ #${last} 🎉`, `the news printed (last: ${lines.at(-1)})`);
    assert.deepEqual(lines.slice(inbox.length), [`#${last + 1n} new`, "✎ #1 edited long after", `☺ #${last} 🎉`]);
    assert.equal(new Set(lines).size, lines.length, "a line printed twice");
    assert.ok(memory.printed.size <= limit && memory.changes.size <= limit);
  });
});

function message(init: MessageInitShape<typeof MessageSchema>): Message {
  return create(MessageSchema, { channelId: CHANNEL, senderUserId: PEER, sentAt: timestampNow(), ...init });
}
