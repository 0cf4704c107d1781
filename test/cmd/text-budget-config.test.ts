import assert from "node:assert/strict";
import { Code } from "@connectrpc/connect";
import { ErrorCode } from "../../gen/es/chat/v1/types_pb.js";
import { readApiConfig } from "../../cmd/api/config.js";
import { readChatServerConfig, sessionLimitsOf } from "../../cmd/chat-server/config.js";
import { loadChatdConfig } from "../../cmd/chatd/config.js";
import { ConfigError } from "../../internal/config/env.js";
import { signUp, type TestUser, rpcError } from "../support/api.js";
import { removeDataDir, startChatd } from "../support/chatd.js";
import { TestDevice } from "../support/device.js";
import { startRole, useDeployment } from "../support/processes.js";

/** The text budget each role reads from `env`, as it hands it on (the chat server: in its session limits). */
const readers: Record<string, (env: NodeJS.ProcessEnv) => { textBurstBytes?: number; textBytesPerSecond?: number }> = {
  chatd: (env) => loadChatdConfig(env).textBudget,
  "chat-server": (env) => sessionLimitsOf(readChatServerConfig(env)),
  api: (env) => readApiConfig(env).textBudget,
};

/** A small budget, two texts of TEXT bytes: frames of 1 KiB carry texts of up to 1 KiB, so 2 KiB may be the burst. */
const SMALL = { CHAT_MAX_FRAME_BYTES: "1024", CHAT_TEXT_BURST_BYTES: "2048", CHAT_TEXT_BYTES_PER_SEC: "1" };
const TEXT = "x".repeat(900);

/** Two texts of TEXT fit SMALL's burst through SendMessage; the third is refused as too much text. */
async function assertThirdTextRefused(user: TestUser, channelId: bigint): Promise<void> {
  await user.api.messages.sendMessage({ channelId, clientMsgId: "m1", text: TEXT });
  await user.api.messages.sendMessage({ channelId, clientMsgId: "m2", text: TEXT });
  const refused = await rpcError(() => user.api.messages.sendMessage({ channelId, clientMsgId: "m3", text: TEXT }));
  assert.equal(refused.code, Code.ResourceExhausted);
  assert.match(refused.rawMessage, /too much text/);
}

describe("the text budget's settings (CHAT_TEXT_BURST_BYTES, CHAT_TEXT_BYTES_PER_SEC)", function () {
  this.timeout(180_000);

  for (const [role, read] of Object.entries(readers)) {
    it(`${role}: read, 1 MiB and 256 KiB a second by default`, () => {
      const defaults = read({});
      assert.deepEqual([defaults.textBurstBytes, defaults.textBytesPerSecond], [1024 * 1024, 256 * 1024]);
      const set = read({ CHAT_TEXT_BURST_BYTES: "4194304", CHAT_TEXT_BYTES_PER_SEC: "1000" });
      assert.deepEqual([set.textBurstBytes, set.textBytesPerSecond], [4 * 1024 * 1024, 1000]);
    });

    it(`${role}: a value that is no positive integer refused at start-up, naming it`, () => {
      for (const [name, raw] of [["CHAT_TEXT_BYTES_PER_SEC", "0"], ["CHAT_TEXT_BYTES_PER_SEC", "1e6"], ["CHAT_TEXT_BURST_BYTES", "-1"], ["CHAT_TEXT_BURST_BYTES", "lots"]]) {
        assert.throws(() => read({ [name!]: raw }), (err) => err instanceof ConfigError && err.message.includes(`${name}=${JSON.stringify(raw)}`), `${name}=${raw}`);
      }
    });

    it(`${role}: a burst that could not hold the longest text a message can carry refused at start-up, naming it`, () => {
      // 99,999 code points of 4 bytes within the default 512 KiB frames.
      assert.throws(() => read({ CHAT_TEXT_BURST_BYTES: "399995" }), (err) => err instanceof ConfigError && /CHAT_TEXT_BURST_BYTES=399995: must be at least 399996/.test(err.message));
      assert.equal(read({ CHAT_TEXT_BURST_BYTES: "399996" }).textBurstBytes, 399_996);
      // Smaller frames carry shorter texts.
      assert.throws(() => read({ ...SMALL, CHAT_TEXT_BURST_BYTES: "1023" }), (err) => err instanceof ConfigError && /CHAT_TEXT_BURST_BYTES=1023: must be at least 1024/.test(err.message));
      assert.equal(read(SMALL).textBurstBytes, 2048);
    });
  }

  it("chatd: its sessions and SendMessage refuse texts past the budget it was given (and OpenDirect past CHAT_MAX_NEW_DIRECT_PER_DAY)", async () => {
    const chatd = await startChatd({ env: { ...SMALL, CHAT_MAX_NEW_DIRECT_PER_DAY: "1" } });
    const devices: TestDevice[] = [];
    try {
      const [alice, bob, carol] = await Promise.all(["alice", "bob", "carol"].map((n) => signUp(chatd.httpUrl, n)));
      const channelId = (await alice!.api.channels.openDirect({ userId: bob!.userId })).channel!.channelId;
      const quota = await rpcError(() => alice!.api.channels.openDirect({ userId: carol!.userId }));
      assert.equal(quota.code, Code.ResourceExhausted);
      assert.match(quota.rawMessage, /started 1 new direct chats today/);
      const a = await new TestDevice(chatd.wsUrl, alice!.devices[0]!.token).connect();
      devices.push(a);
      // The default budget (1 MiB) takes all three.
      assert.equal((await a.send(channelId, TEXT, "s1")).kind.case, "sendAck");
      assert.equal((await a.send(channelId, TEXT, "s2")).kind.case, "sendAck");
      // Sent once (send() would wait out RATE_LIMITED and send again).
      const third = await a.reply(a.sendFrame({ kind: { case: "send", value: { channelId, text: TEXT, clientMsgId: "s3" } } }));
      assert.ok(third.kind.case === "error" && third.kind.value.code === ErrorCode.RATE_LIMITED, `the third text refused: ${third.kind.case}`);

      await assertThirdTextRefused(alice!, channelId);
    } finally {
      await Promise.all(devices.map((d) => d.close()));
      await chatd.stop();
      removeDataDir(chatd.dataDir);
    }
  });

  describe("the api process", () => {
    const deployment = useDeployment("textbudget");

    it("SendMessage refuses texts past the budget it was given", async () => {
      const api = await startRole("api", { ...deployment.env, ...SMALL });
      try {
        const url = String(api.info.http);
        const [alice, bob] = await Promise.all([signUp(url, "alice"), signUp(url, "bob")]);
        const channelId = (await alice!.api.channels.openDirect({ userId: bob!.userId })).channel!.channelId;
        await assertThirdTextRefused(alice!, channelId);
      } finally {
        await api.stop();
      }
    });
  });
});
