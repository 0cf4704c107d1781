import assert from "node:assert/strict";
import { once } from "node:events";
import http from "node:http";
import { signUpsInFlight } from "../support/api.js";
import { startRole, useDeployment } from "../support/processes.js";

// A rolling restart of the api: SIGTERM with requests in flight. They were all reset (the
// listener's connections cut at once), sign-ups among them stored with their replies lost.
describe("api: SIGTERM with requests in flight", function () {
  this.timeout(180_000);
  const deployment = useDeployment("apidrain");

  it("answers every request it holds, then exits 0", async () => {
    const api = await startRole("api", deployment.env);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 24 });
    const { answers: inFlight } = await signUpsInFlight(String(api.info.http), agent, 24);
    // One answered: the api has been at them for a password hash's time, so it has read every
    // request (one still unread on its connection would be a keep-alive race, not a drain), and
    // the hashes queue behind the thread pool's four threads, so most are still in flight.
    await Promise.race(inFlight);
    const exited = once(api.child, "exit") as Promise<[number | null]>;
    api.child.kill("SIGTERM");
    const answers = await Promise.all(inFlight);
    agent.destroy();
    assert.deepEqual(answers, answers.map(() => "200"), `every sign-up answered: ${answers.join(", ")}`);
    const [code] = await exited;
    assert.equal(code, 0);
  });
});
