import assert from "node:assert/strict";
import type { SessionDirectory } from "../delivery/port.js";
import type { IdGenerator } from "../ids/snowflake.js";
import type { Sender } from "../messages/submit.js";
import type { StoredMessage } from "../model/types.js";
import { openSqliteStorage, type SqliteStorage } from "../storage/sqlite/index.js";
import { DirectSubmitter } from "./direct-submitter.js";

const GROUP = 10n;
const ALICE: Sender = { userId: 1n, deviceId: 11n };
const BOB: Sender = { userId: 2n, deviceId: 21n };
const CAROL: Sender = { userId: 3n, deviceId: 31n };

const until = async (cond: () => boolean) => {
  while (!cond()) await new Promise((r) => setImmediate(r));
};

/**
 * An admin's delete of another's message rests on their role, read as the
 * delete is checked; the owner may demote them, or remove them, before it is
 * written (here: while it waits in its device's line behind a reply whose
 * target is still being read).
 */
describe("DirectSubmitter, an admin's delete while they are demoted", () => {
  let storage: SqliteStorage;
  let submitter: DirectSubmitter;
  let answerTarget: (() => void) | undefined;
  let holding = false;
  beforeEach(async () => {
    storage = openSqliteStorage(":memory:");
    await storage.channels.createGroup({ channelId: GROUP, kind: "group", title: "g", createdAtMs: 1, createdBy: ALICE.userId }, [
      { channelId: GROUP, userId: ALICE.userId, role: "owner", joinedAtMs: 1, readSeq: 0n },
      { channelId: GROUP, userId: BOB.userId, role: "member", joinedAtMs: 1, readSeq: 0n },
      { channelId: GROUP, userId: CAROL.userId, role: "admin", joinedAtMs: 1, readSeq: 0n },
    ]);
    let id = 1000n;
    const sessions = { pushToUsers: async () => {}, pushMany: async () => new Set(), closeDevice: async () => {}, onlineUsers: async () => new Set() };
    // The first read of a message once `holding` is set waits for answerTarget.
    const log = Object.create(storage.messages) as typeof storage.messages;
    log.get = async (channelId: bigint, seq: bigint): Promise<StoredMessage | undefined> => {
      if (holding) {
        holding = false;
        await new Promise<void>((r) => (answerTarget = r));
      }
      return storage.messages.get(channelId, seq);
    };
    submitter = new DirectSubmitter({
      channels: storage.channels,
      writer: storage.writer,
      log,
      ids: { next: () => ++id } as unknown as IdGenerator,
      sessions: sessions as unknown as SessionDirectory,
    });
  });
  afterEach(() => storage.close());

  /** Carol's delete of Bob's message, checked while she is an admin, waiting behind a reply of hers. */
  async function deleteWaiting() {
    await submitter.submit(BOB, { channelId: GROUP, clientMsgId: "q", text: "question" });
    holding = true;
    answerTarget = undefined;
    const reply = submitter.submit(CAROL, { channelId: GROUP, clientMsgId: "r", text: "answer", replyToSeq: 1n });
    await until(() => answerTarget !== undefined);
    let checked = false;
    const getMember = storage.channels.getMember.bind(storage.channels);
    storage.channels.getMember = async (...args) => {
      const m = await getMember(...args);
      if (args[1] === CAROL.userId) checked = true;
      return m;
    };
    const del = submitter.submit(CAROL, { channelId: GROUP, clientMsgId: "d", text: "", deleteSeq: 1n });
    await until(() => checked);
    return { reply, del };
  }

  it("refuses the delete of another's message once its sender is no admin, and deletes nothing", async () => {
    const { reply, del } = await deleteWaiting();
    assert.equal(await storage.channels.setRole(GROUP, CAROL.userId, "member"), true);
    answerTarget!();
    const refused = assert.rejects(del, (e: Error & { code?: string }) => e.code === "permission_denied");
    await reply;
    await refused;
    assert.equal((await storage.messages.get(GROUP, 1n))!.deleted, undefined, "Bob's message deleted by a plain member");
  });

  it("still deletes it for an admin who stays one", async () => {
    const { reply, del } = await deleteWaiting();
    answerTarget!();
    await reply;
    await del;
    assert.equal((await storage.messages.get(GROUP, 1n))!.deleted, true);
  });
});
