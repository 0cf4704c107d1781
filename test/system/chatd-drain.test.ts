import assert from "node:assert/strict";
import { once } from "node:events";
import http from "node:http";
import { removeDataDir, startChatd } from "../support/chatd.js";

// chatd stopped (SIGTERM, Ctrl+C) with API requests in flight: they were all reset (the
// listener's connections cut at once), sign-ups among them stored with their replies lost.
describe("chatd: SIGTERM with API requests in flight", function () {
  this.timeout(180_000);

  it("answers every request it holds, then exits 0", async () => {
    const chatd = await startChatd();
    try {
      const url = new URL("/chat.v1.AuthService/SignUp", chatd.httpUrl);
      const agent = new http.Agent({ keepAlive: true, maxSockets: 24 });
      // 24 connections accepted and kept alive first: a connection still in the listen backlog when
      // the listener closes is the kernel's to reset, whatever the server does.
      const healthz = new URL("/healthz", chatd.httpUrl);
      await Promise.all(
        Array.from({ length: 24 }, () => new Promise<void>((resolve, reject) => http.get(healthz, { agent }, (res) => res.resume().on("end", resolve)).on("error", reject))),
      );
      const run = Date.now().toString(36);
      // Each sign-up hashes a password (argon2id): many at once keep chatd busy for a while.
      const signUps = Array.from({ length: 24 }, (_, i) => {
        const body = JSON.stringify({ username: `drain${run}${i}`, password: "correct horse battery", displayName: "d", device: { name: "d" } });
        const req = http.request(url, { method: "POST", agent, headers: { "content-type": "application/json" } });
        const answer = new Promise<string>((resolve) => {
          req.on("response", (res) => {
            res.resume();
            res.on("end", () => resolve(String(res.statusCode)));
          });
          req.on("error", (err) => resolve(err.message));
        });
        req.end(body);
        return { sent: once(req, "finish"), answer };
      });
      await Promise.all(signUps.map((s) => s.sent));
      // One answered: the hashes queue behind the thread pool's four threads, so most are still in
      // flight, and a request on a kept-alive connection may not even be parsed yet.
      await Promise.race(signUps.map((s) => s.answer));
      const exited = once(chatd.child, "exit") as Promise<[number | null]>;
      chatd.child.kill("SIGTERM");
      const answers = await Promise.all(signUps.map((s) => s.answer));
      agent.destroy();
      assert.deepEqual(answers, answers.map(() => "200"), `every sign-up answered: ${answers.join(", ")}`);
      const [code] = await exited;
      assert.equal(code, 0);
    } finally {
      await chatd.kill();
      removeDataDir(chatd.dataDir);
    }
  });
});
