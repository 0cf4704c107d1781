import assert from "node:assert/strict";
import type { ApiLimitsConfig } from "../throttle/config.js";
import { MemoryLoginAttempts } from "../throttle/memory.js";
import { ApiLimiter } from "./limits.js";
import { rpcError, TestApi } from "./testkit.js";

const OFF: ApiLimitsConfig = { authPerSec: 0, authBurst: 1, callsPerSec: 0, callBurst: 1, loginMaxFailures: 0, loginWindowMs: 60_000, maxDevicesPerAccount: 100 };

// A text pasted into a reaction or a delete was refused (INVALID_ARGUMENT) by the submitter only after
// SendMessage had taken its bytes from the account's text budget: the sender's next message was refused.
describe("api: SendMessage charges nothing for a reaction or a delete its text makes impossible", () => {
  let api: TestApi;
  const clock = { ms: Date.UTC(2026, 5, 1) };
  afterEach(async () => api.close());

  it("refuses a reaction longer than any emoji and a delete with text before the text budget, and two of the longest texts still fit its burst", async () => {
    api = await TestApi.start({ limits: new ApiLimiter(OFF, new MemoryLoginAttempts(OFF.loginWindowMs, { now: () => clock.ms }), { now: () => clock.ms }) });
    const [alice, bob] = [await api.signUp("alice"), await api.signUp("bob")];
    const channelId = (await alice.c.channels.openDirect({ userId: bob.userId })).channel!.channelId;
    await alice.c.messages.sendMessage({ channelId, clientMsgId: "m", text: "hi" });
    // 99,999 code points of 4 bytes: the 1 MiB burst holds two such texts, not three.
    const long = "😀".repeat(99_999);
    const reaction = await rpcError(() => alice.c.messages.sendMessage({ channelId, clientMsgId: "r", text: long, reactSeq: 1n }));
    assert.equal(reaction.chatCode, "ERROR_CODE_INVALID_ARGUMENT");
    assert.match(reaction.rawMessage, /one emoji/);
    const deletion = await rpcError(() => alice.c.messages.sendMessage({ channelId, clientMsgId: "d", text: long, deleteSeq: 1n }));
    assert.equal(deletion.chatCode, "ERROR_CODE_INVALID_ARGUMENT");
    assert.match(deletion.rawMessage, /empty when deleting/);
    await alice.c.messages.sendMessage({ channelId, clientMsgId: "a1", text: long });
    await alice.c.messages.sendMessage({ channelId, clientMsgId: "a2", text: long });
  });
});
