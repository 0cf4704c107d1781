// `follow` of chat-cli in this process, against a stand-in gateway and api: a reaction the server stamped
// just before a history read but stored after it (the read did not show it) is news when it comes.
import assert from "node:assert/strict";
import { create, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs, timestampNow } from "@bufbuild/protobuf/wkt";
import type WebSocket from "ws";
import { PageDirection } from "../../gen/es/chat/v1/messages_pb.js";
import { ServerFrameSchema } from "../../gen/es/chat/v1/session_pb.js";
import { MessageSchema, ReactionSchema, type Message } from "../../gen/es/chat/v1/types_pb.js";
import { follow } from "../../internal/cli/follow.js";
import { waitFor } from "../support/wait.js";
import { standInSession, startStandInGateway, type StandInGateway } from "./stand-in-gateway.js";

const CHANNEL = 7n;
const PEER = 99n;

describe("chat-cli follow: a reaction stamped before a history read and stored after it", function () {
  this.timeout(30_000);
  let gateway: StandInGateway;
  let stop: AbortController;
  let following: Promise<void>;

  beforeEach(async () => (gateway = await startStandInGateway()));
  afterEach(async () => {
    stop?.abort();
    await following?.catch(() => undefined);
    await gateway.close();
  });

  it("is printed once, and its replays (and an older one of the same person's) are not printed again", async () => {
    const { sockets } = gateway;
    const one = message({ messageId: 1n, seq: 1n, text: "one" });
    /** The reactions to #1 a history read finds: the server's messages table, as the test says. */
    let stored: Array<{ userId: bigint; emoji: string }> = [];
    /** When each read of #1 (a look back from after it) was answered, on this machine's clock, which is the stand-in's. */
    const reads: number[] = [];
    const session = standInSession();
    (session.api.messages as unknown as { listMessages: unknown }).listMessages = async (req: { anchorSeq: bigint; direction: PageDirection }) => {
      // Nothing after #1 but what the gateway brings.
      if (req.direction === PageDirection.FORWARD) return { messages: [], hasMore: false };
      reads.push(Date.now());
      return { messages: [create(MessageSchema, { ...one, reactions: stored.map((r) => create(ReactionSchema, r)) })], hasMore: false };
    };
    const lines: string[] = [];
    stop = new AbortController();
    following = follow(session, {
      channelId: CHANNEL,
      afterSeq: 1n,
      shown: [one],
      shownAtMs: Date.now() - 60_000,
      signal: stop.signal,
      wsUrl: gateway.url,
      print: async (m) => void lines.push(`#${m.seq} ${m.text}`),
      printChange: async (ch) => void lines.push(`${ch.reaction ? "☺" : ch.deleted ? "✗" : "✎"} #${ch.targetSeq} ${ch.text}`),
      status: () => {},
    });
    await waitFor(() => sockets.length === 1, "the connection");
    const send = (socket: WebSocket, entries: Array<{ inboxSeq: bigint; message: Message }>) =>
      socket.send(toBinary(ServerFrameSchema, create(ServerFrameSchema, { kind: { case: "syncBatch", value: { entries } } })));

    // A reconnect: its look at #1 finds no reaction, which the server stamped 50 ms before that read and stores after it.
    sockets[0]!.close(1011, "restarting");
    await waitFor(() => sockets.length === 2 && reads.length === 1, "the reconnect's read of #1");
    const thumbs = message({ messageId: 1001n, targetSeq: 1n, reaction: true, text: "👍", sentAt: timestampFromMs(reads[0]! - 50) });
    stored = [{ userId: PEER, emoji: "👍" }];
    send(sockets[1]!, [{ inboxSeq: 1n, message: thumbs }]);
    // Entries are taken in order: once #2 is out, the reaction before it was printed or skipped.
    send(sockets[1]!, [{ inboxSeq: 2n, message: message({ messageId: 2n, seq: 2n, text: "two" }) }]);
    await waitFor(() => lines.includes("#2 two"), `#2 printed (${lines.join(" | ")})`);
    // Skipped: its stamp was older than the read, which had not shown it, and nothing else would.
    assert.deepEqual(lines, ["☺ #1 👍", "#2 two"]);

    // Changed to ❤️ (news), then another reconnect whose replay brings both again, 👍 (no longer so) first.
    const heart = message({ messageId: 1002n, targetSeq: 1n, reaction: true, text: "❤️", sentAt: timestampNow() });
    stored = [{ userId: PEER, emoji: "❤️" }];
    send(sockets[1]!, [{ inboxSeq: 3n, message: heart }]);
    await waitFor(() => lines.includes("☺ #1 ❤️"), `❤️ printed (${lines.join(" | ")})`);
    sockets[1]!.close(1011, "restarting");
    await waitFor(() => sockets.length === 3 && reads.length >= 2, "the second reconnect's read of #1");
    // Another cursor's replay: the 👍 and the ❤️ as if new to this session (inbox seqs are per session here).
    send(sockets[2]!, [
      { inboxSeq: 1n, message: create(MessageSchema, { ...thumbs, messageId: 2001n }) },
      { inboxSeq: 2n, message: create(MessageSchema, { ...heart, messageId: 2002n }) },
    ]);
    send(sockets[2]!, [{ inboxSeq: 3n, message: message({ messageId: 3n, seq: 3n, text: "three" }) }]);
    await waitFor(() => lines.includes("#3 three"), `#3 printed (${lines.join(" | ")})`);
    assert.deepEqual(lines, ["☺ #1 👍", "#2 two", "☺ #1 ❤️", "#3 three"]);
  });
});

function message(init: MessageInitShape<typeof MessageSchema>): Message {
  return create(MessageSchema, { channelId: CHANNEL, senderUserId: PEER, sentAt: timestampNow(), ...init });
}
