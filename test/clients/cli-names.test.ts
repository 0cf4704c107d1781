// chat-cli's names of users by id (Session.usersById, username): kept for the users used
// recently only, so a follow of a busy group running for days does not grow with every sender.
import assert from "node:assert/strict";
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import type WebSocket from "ws";
import { ServerFrameSchema } from "../../gen/es/chat/v1/session_pb.js";
import { MessageSchema, UserSchema } from "../../gen/es/chat/v1/types_pb.js";
import { Session } from "../../internal/cli/client.js";
import { follow } from "../../internal/cli/follow.js";
import type { LoginStore } from "../../internal/cli/store.js";
import { waitFor } from "../support/wait.js";
import { startStandInGateway, type StandInGateway } from "./stand-in-gateway.js";

const CHANNEL = 7n;

/** A session keeping `limit` users, whose api answers a user's lookup after `delayMs(id)` and counts the ids asked for. */
function session(limit: number, delayMs: (id: bigint) => number = () => 0) {
  const login = { server: "http://127.0.0.1:1", username: "me", userId: "1", deviceId: "2", accessToken: "t", accessExpiresAtMs: Date.now() + 3_600_000, refreshToken: "r" };
  const s = new Session({} as LoginStore, login, limit);
  const asked: bigint[] = [];
  (s as { api: unknown }).api = {
    users: {
      getUsers: async ({ userIds }: { userIds: bigint[] }) => {
        asked.push(...userIds);
        await new Promise((r) => setTimeout(r, Math.max(...userIds.map(delayMs))));
        return { users: userIds.map((id) => create(UserSchema, { userId: id, username: `u${id}` })) };
      },
    },
    messages: { listMessages: async () => ({ messages: [], hasMore: false }) },
    channels: { describeChannel: async () => ({}) },
  };
  return { s, asked };
}

describe("chat-cli's names of users", function () {
  this.timeout(60_000);

  it("keeps those used most recently, up to its limit, and asks again for one let go", async () => {
    const { s, asked } = session(3);
    for (const id of [1n, 2n, 3n]) assert.equal(await s.username(id), `u${id}`);
    assert.equal(await s.username(1n), "u1", "kept");
    assert.deepEqual(asked, [1n, 2n, 3n]);
    // 1 was just used: 2, used longest ago, goes.
    assert.equal(await s.username(4n), "u4");
    assert.equal(s.usersKept, 3);
    assert.equal(await s.username(1n), "u1");
    assert.deepEqual(asked, [1n, 2n, 3n, 4n], "1 asked for again");
    assert.equal(await s.username(2n), "u2");
    assert.deepEqual(asked, [1n, 2n, 3n, 4n, 2n], "2 let go, and asked for again");
    assert.equal(s.usersKept, 3);
  });

  it("answers every user of a list longer than it keeps", async () => {
    const { s } = session(3);
    const ids = [10n, 11n, 12n, 13n, 14n, 15n];
    const found = await s.usersById(ids);
    assert.deepEqual([...found.keys()], ids.map(String));
    assert.ok(s.usersKept <= 3, `${s.usersKept} kept`);
  });

  describe("in follow", () => {
    let gateway: StandInGateway;
    let sockets: WebSocket[];
    let stop: AbortController | undefined;
    let following: Promise<void> | undefined;

    beforeEach(async () => {
      gateway = await startStandInGateway();
      sockets = gateway.sockets;
    });
    afterEach(async () => {
      stop?.abort();
      await following?.catch(() => undefined);
      await gateway.close();
    });

    it("prints each message with its sender's name, in order, while names let go are asked for again (slowly)", async () => {
      const limit = 4;
      const senders = 12;
      // A sender looked up again takes longer than one kept, which is printed at once.
      const { s, asked } = session(limit, (id) => 5 + Number(id % 3n) * 10);
      const lines: string[] = [];
      stop = new AbortController();
      following = follow(s, {
        channelId: CHANNEL,
        afterSeq: 0n,
        signal: stop.signal,
        wsUrl: gateway.url,
        print: async (m) => void lines.push(`#${m.seq} ${await s.username(m.senderUserId)}: ${m.text}`),
        printChange: async () => {},
        status: () => {},
      });
      await waitFor(() => sockets.length === 1, "the connection");
      const n = 120;
      // Senders in turn, some again at once (kept), most after the limit let them go.
      const senderOf = (i: number) => BigInt(100 + (i % 5 === 1 ? (i - 1) % senders : i % senders));
      const entries = Array.from({ length: n }, (_, i) => ({
        inboxSeq: BigInt(i + 1),
        message: create(MessageSchema, { channelId: CHANNEL, messageId: BigInt(i + 1), seq: BigInt(i + 1), senderUserId: senderOf(i), sentAt: timestampNow(), text: `m${i + 1}` }),
      }));
      sockets[0]!.send(toBinary(ServerFrameSchema, create(ServerFrameSchema, { kind: { case: "syncBatch", value: { entries } } })));
      await waitFor(() => lines.length === n, `every message printed (${lines.length} of ${n})`);
      assert.deepEqual(lines, entries.map((e, i) => `#${i + 1} u${senderOf(i)}: m${i + 1}`));
      assert.ok(s.usersKept <= limit, `${s.usersKept} names kept, more than ${limit}`);
      assert.ok(asked.length > senders, `names let go asked for again (${asked.length} lookups)`);
    });
  });

  it("finds @ａｌｉｃｅ, typed in an East Asian keyboard's wide mode, as the server's search does", async () => {
    const { s } = session(3);
    const alice = create(UserSchema, { userId: 9n, username: "alice" });
    (s as unknown as { api: { users: { searchUsers: unknown } } }).api.users.searchUsers = async ({ query }: { query: string }) => ({
      users: query.normalize("NFKC").toLowerCase() === "alice" ? [alice] : [],
    });
    assert.equal((await s.findUser("＠ＡＬＩＣＥ")).userId, 9n);
    assert.equal((await s.findUser("@ａｌｉｃｅ")).userId, 9n);
  });
});
