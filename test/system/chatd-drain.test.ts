import assert from "node:assert/strict";
import { once } from "node:events";
import http from "node:http";
import { grpcSignUpsInFlight, signUpsInFlight } from "../support/api.js";
import { removeDataDir, startChatd } from "../support/chatd.js";

// chatd stopped (SIGTERM, Ctrl+C) with API requests in flight: they were all reset (the
// listener's connections cut at once), sign-ups among them stored with their replies lost.
describe("chatd: SIGTERM with API requests in flight", function () {
  this.timeout(180_000);

  it("answers every request it holds, then exits 0", async () => {
    const chatd = await startChatd();
    try {
      const agent = new http.Agent({ keepAlive: true, maxSockets: 24 });
      const { answers: inFlight } = await signUpsInFlight(chatd.httpUrl, agent, 24);
      // One answered: chatd has been at them for a password hash's time, so it has read every request,
      // and the hashes queue behind the thread pool's four threads, so most are still in flight.
      await Promise.race(inFlight);
      const exited = once(chatd.child, "exit") as Promise<[number | null]>;
      chatd.child.kill("SIGTERM");
      const answers = await Promise.all(inFlight);
      agent.destroy();
      assert.deepEqual(answers, answers.map(() => "200"), `every sign-up answered: ${answers.join(", ")}`);
      const [code] = await exited;
      assert.equal(code, 0);
    } finally {
      await chatd.kill();
      removeDataDir(chatd.dataDir);
    }
  });

  it("with CHAT_DRAIN_GRACE_MS=0 cuts what is in flight on both listeners at once, then exits 0", async () => {
    const chatd = await startChatd({ env: { CHAT_DRAIN_GRACE_MS: "0" } });
    try {
      const agent = new http.Agent({ keepAlive: true, maxSockets: 24 });
      const { answers: overHttp } = await signUpsInFlight(chatd.httpUrl, agent, 24);
      // connect-node's client leaves a call or two whose stream the GOAWAY overtook waiting for their
      // deadline, long after chatd exited: a short one, since a cut call is all this asks of them.
      const overGrpc = grpcSignUpsInFlight(chatd.grpcUrl, 24, 1, 8_000);
      // 48 hashes behind the thread pool's four threads: most still in flight when the first is answered.
      await Promise.race([...overHttp, ...overGrpc]);
      const exited = once(chatd.child, "exit") as Promise<[number | null]>;
      chatd.child.kill("SIGTERM");
      const [http1, grpc] = [await Promise.all(overHttp), await Promise.all(overGrpc)];
      agent.destroy();
      assert.ok(http1.some((a) => a !== "200"), `some HTTP sign-up cut: ${http1.join(", ")}`);
      assert.ok(grpc.some((a) => a !== "OK" && !a.includes("deadline_exceeded")), `some gRPC sign-up cut by chatd: ${grpc.join(", ")}`);
      const [code] = await exited;
      assert.equal(code, 0);
    } finally {
      await chatd.kill();
      removeDataDir(chatd.dataDir);
    }
  });
});
