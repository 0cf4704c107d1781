import assert from "node:assert/strict";
import { PageDirection } from "../../gen/es/chat/v1/messages_pb.js";
import { ChannelEventKind } from "../../gen/es/chat/v1/session_pb.js";
import { ChannelNoteKind, MemberRole, type Message } from "../../gen/es/chat/v1/types_pb.js";
import { apiClients, signUp, type ApiClients, type TestUser } from "../support/api.js";
import { removeDataDir, startChatd, type ChatdProcess } from "../support/chatd.js";
import { TestDevice } from "../support/device.js";
import { engineConfig } from "../support/engines.js";
import { startRole, useDeployment } from "../support/processes.js";
import { TcpProxy } from "../support/tcp-proxy.js";
import { waitFor } from "../support/wait.js";

const ROUNDS = 10;

/** x's sessions, closed after each test. */
const sessions: TestDevice[] = [];

/**
 * Races an owner's AddMembers of x (through `url(0)`) against an admin's
 * RemoveMembers of x (through `url(1)`), ROUNDS times, and holds the group's
 * history to the store: x's membership after each round, as ListMembers
 * answers it, is what the notes in seq order say (the last MEMBERS_ADDED or
 * MEMBER_REMOVED naming x). Each round ends with a rename whose note is
 * published after both racers' (they are answered once theirs are), so the
 * history up to it holds every note of the round. And x's open session is
 * told its JOINED and LEFT in the order of those notes: its apps list the
 * group or drop it by the last one told.
 */
async function raceAddsAndRemovals(url: (i: number) => string, wsUrl: string): Promise<void> {
  const [owner, admin, x] = await Promise.all([0, 1, 0].map((i) => signUp(url(i), "ord")));
  const as = (i: number, u: TestUser): ApiClients => apiClients(url(i), u!.devices[0]!.token);
  const device = new TestDevice(wsUrl, x!.devices[0]!.token);
  sessions.push(device);
  await device.connect();
  const channelId = (await as(0, owner!).channels.createGroup({ title: "order", memberUserIds: [admin!.userId, x!.userId] })).channel!.channelId;
  await as(0, owner!).channels.setMemberRole({ channelId, userId: admin!.userId, role: MemberRole.ADMIN });
  const inAfter: boolean[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    // The admin removes x over and over while the owner's add is on its way: one removal lands
    // just after the add, before the add's answer (its note is written before it is answered).
    let adding = true;
    const add = as(0, owner!).channels.addMembers({ channelId, userIds: [x!.userId] }).finally(() => (adding = false));
    while (adding) await as(1, admin!).channels.removeMember({ channelId, userId: x!.userId });
    await add;
    const members = (await as(1, owner!).channels.listMembers({ channelId })).members;
    inAfter.push(members.some((m) => m.userId === x!.userId));
    await as(0, owner!).channels.updateGroup({ channelId, title: `round ${round}` });
  }
  const history = await waitFor(async () => {
    const all: Message[] = [];
    for (let anchor = 0n; ; ) {
      const page = await as(1, owner!).messages.listMessages({ channelId, anchorSeq: anchor, direction: PageDirection.FORWARD, limit: 200 });
      all.push(...page.messages);
      if (!page.hasMore || page.messages.length === 0) break;
      anchor = page.messages[page.messages.length - 1]!.seq;
    }
    const last = all[all.length - 1]?.note;
    return last?.kind === ChannelNoteKind.TITLE_CHANGED && last.title === `round ${ROUNDS - 1}` ? all : undefined;
  }, "the last round's note", 30_000, 100);
  let noted = true; // x was in the group as made
  const told: string[] = [];
  const wrong: string[] = [];
  let round = 0;
  for (const m of history) {
    const note = m.note!;
    if (note.kind === ChannelNoteKind.TITLE_CHANGED) {
      if (noted !== inAfter[round]) wrong.push(`round ${round}: notes ${told.join(" ")} say x is ${noted ? "in" : "out"}, ListMembers ${inAfter[round] ? "in" : "out"}`);
      told.length = 0;
      round++;
    } else if (note.userIds.includes(x!.userId)) {
      if (note.kind === ChannelNoteKind.MEMBERS_ADDED) noted = true;
      if (note.kind === ChannelNoteKind.MEMBER_REMOVED) noted = false;
      told.push(ChannelNoteKind[note.kind]);
    }
  }
  assert.equal(round, ROUNDS);
  assert.deepEqual(wrong, []);
  const notes = history.flatMap((m) => {
    const note = m.note!;
    if (!note.userIds.includes(x!.userId)) return [];
    return note.kind === ChannelNoteKind.MEMBERS_ADDED ? ["JOINED"] : note.kind === ChannelNoteKind.MEMBER_REMOVED ? ["LEFT"] : [];
  });
  const events = () => device.frames.flatMap((f) => {
    const e = f.kind.case === "channel" ? f.kind.value : undefined;
    if (!e || e.userId !== x!.userId || (e.kind !== ChannelEventKind.JOINED && e.kind !== ChannelEventKind.LEFT)) return [];
    return [ChannelEventKind[e.kind]];
  });
  await waitFor(() => events().length >= notes.length, `x's session told of its ${notes.length} changes`, 30_000);
  assert.deepEqual(events(), notes, "x's session is told its JOINED and LEFT in the order of their notes");
}

describe("a group's history agrees with its membership under racing changes", function () {
  this.timeout(180_000);
  afterEach(async () => {
    await Promise.all(sessions.splice(0).map((d) => d.close()));
  });

  describe("in the cluster: two api processes on the real engines", () => {
    const { env } = useDeployment("no");
    const apis: string[] = [];
    let wsUrl = "";
    // The owner's api process reads Cassandra's answers over a slow link: its add's note is written
    // well after the add landed, long enough for the admin's removal through the other to land and be told.
    let slowLink: TcpProxy | undefined;
    before(async () => {
      const common = { ...env, CHAT_KAFKA_PARTITIONS: "2", CHAT_OPS_PORT: "0", CHAT_API_CALLS_PER_SEC: "0" };
      // The first api creates the keyspace and the signing key; the second starts after it.
      const direct = await startRole("api", common);
      slowLink = await TcpProxy.start(engineConfig().cassandraContactPoints[0]!);
      slowLink.answerDelayMs = 20;
      const slow = await startRole("api", { ...common, CHAT_CASSANDRA_CONTACT_POINTS: slowLink.address });
      apis.push(String(slow.info.http), String(direct.info.http));
      await startRole("pipeline", common);
      await startRole("chat-server", common);
      const gateway = await startRole("gateway", common);
      wsUrl = String(gateway.info.ws);
      await waitFor(async () => (await fetch(`${String(gateway.info.http)}/healthz`)).ok, "the gateway to see the chat server", 60_000);
    });
    after(async () => {
      await slowLink?.close();
    });

    it(`adds and removals of one user by two managers through two api processes, ${ROUNDS} rounds`, async () => {
      await raceAddsAndRemovals((i) => apis[i]!, wsUrl);
    });
  });

  describe("in chatd: one process on SQLite", () => {
    let chatd: ChatdProcess | undefined;
    before(async () => {
      chatd = await startChatd({ env: { CHAT_API_CALLS_PER_SEC: "0" } });
    });
    after(async () => {
      await chatd?.stop();
      if (chatd) removeDataDir(chatd.dataDir);
    });

    it(`adds and removals of one user by two managers at once, ${ROUNDS} rounds`, async () => {
      await raceAddsAndRemovals(() => chatd!.httpUrl, chatd!.wsUrl);
    });
  });
});
