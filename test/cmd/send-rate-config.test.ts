import assert from "node:assert/strict";
import { Code } from "@connectrpc/connect";
import { readApiConfig } from "../../cmd/api/config.js";
import { readChatServerConfig, sessionLimitsOf } from "../../cmd/chat-server/config.js";
import { loadChatdConfig } from "../../cmd/chatd/config.js";
import { ConfigError } from "../../internal/config/env.js";
import { rpcError, signUp } from "../support/api.js";
import { startRole, useDeployment } from "../support/processes.js";

/** The send rate each role reads from `env`, as it hands it on (the chat server: in its session limits). */
const readers: Record<string, (env: NodeJS.ProcessEnv) => { sendsPerSecond?: number; sendBurst?: number }> = {
  chatd: (env) => loadChatdConfig(env).sendRate,
  "chat-server": (env) => sessionLimitsOf(readChatServerConfig(env)),
  api: (env) => readApiConfig(env).sendRate,
};

describe("the send rate's settings (CHAT_SENDS_PER_SEC, CHAT_SEND_BURST)", function () {
  this.timeout(180_000);

  for (const [role, read] of Object.entries(readers)) {
    it(`${role}: read, 20 a second with bursts of 100 by default, 0 turning it off`, () => {
      const defaults = read({});
      assert.deepEqual([defaults.sendsPerSecond, defaults.sendBurst], [20, 100]);
      const set = read({ CHAT_SENDS_PER_SEC: "5", CHAT_SEND_BURST: "30" });
      assert.deepEqual([set.sendsPerSecond, set.sendBurst], [5, 30]);
      assert.equal(read({ CHAT_SENDS_PER_SEC: "0" }).sendsPerSecond, 0);
    });

    it(`${role}: a value out of range or no integer refused at start-up, naming it`, () => {
      for (const [name, raw] of [["CHAT_SENDS_PER_SEC", "-1"], ["CHAT_SENDS_PER_SEC", "2.5"], ["CHAT_SENDS_PER_SEC", "100001"], ["CHAT_SEND_BURST", "0"], ["CHAT_SEND_BURST", "lots"]]) {
        assert.throws(() => read({ [name!]: raw }), (err) => err instanceof ConfigError && err.message.includes(`${name}=${JSON.stringify(raw)}`), `${name}=${raw}`);
      }
    });
  }

  describe("the api process", () => {
    const deployment = useDeployment("sendrate");

    it("SendMessage refuses sends past the rate it was given", async () => {
      const api = await startRole("api", { ...deployment.env, CHAT_SENDS_PER_SEC: "1", CHAT_SEND_BURST: "2" });
      try {
        const url = String(api.info.http);
        const [alice, bob] = await Promise.all([signUp(url, "alice"), signUp(url, "bob")]);
        const channelId = (await alice!.api.channels.openDirect({ userId: bob!.userId })).channel!.channelId;
        await alice!.api.messages.sendMessage({ channelId, clientMsgId: "m1", text: "hi" });
        await alice!.api.messages.sendMessage({ channelId, clientMsgId: "m2", text: "hi" });
        const refused = await rpcError(() => alice!.api.messages.sendMessage({ channelId, clientMsgId: "m3", text: "hi" }));
        assert.equal(refused.code, Code.ResourceExhausted);
        assert.match(refused.rawMessage, /too many messages sent by this account/);
      } finally {
        await api.stop();
      }
    });
  });
});
