import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { engineConfig } from "../../../test/support/engines.js";
import { createClient, RECONNECT_MAX_DELAY_MS } from "./session.js";

/** The driver's own jitter on a reconnection delay: +/- 15 %. */
const JITTER = 1.15;

describe("cassandra client", function () {
  this.timeout(200_000);
  let probe: ChildProcess | undefined;
  after(() => {
    if (probe && probe.exitCode === null && probe.signalCode === null) probe.kill("SIGKILL");
  });

  it("tries a node that went down again every few seconds at most, however long it stays down", () => {
    const client = createClient({ contactPoints: ["127.0.0.1:1"], localDataCenter: "dc" });
    const policy = (client as unknown as { options: { policies: { reconnection: { newSchedule(): Iterator<number> } } } }).options.policies.reconnection;
    const schedule = policy.newSchedule();
    const delays = Array.from({ length: 40 }, () => schedule.next().value as number);
    // The driver's default doubled to 10 minutes: a cluster back after a few minutes away went unused for as long again.
    assert.ok(Math.max(...delays) <= RECONNECT_MAX_DELAY_MS * JITTER, `delays ${delays.join(", ")}`);
  });

  it("on a real Cassandra, answers again within seconds of the node coming back after a long outage", async () => {
    // In a process of its own: after an outage the driver leaves a timer of a host
    // it replaced running past shutdown(), which would keep mocha from exiting.
    const out = await new Promise<string>((resolve, reject) => {
      const child = (probe = spawn(process.execPath, ["--import", "tsx", join(import.meta.dirname, "session.outage-probe.ts")], {
        env: { ...process.env, CASSANDRA_TARGET: engineConfig().cassandraContactPoints[0]!, CASSANDRA_DC: engineConfig().cassandraDc },
        stdio: ["ignore", "pipe", "inherit"],
      }));
      let text = "";
      child.stdout.on("data", (d) => (text += String(d)));
      child.on("error", reject);
      child.on("exit", (code) => (code === 0 ? resolve(text) : reject(new Error(`the probe exited ${code}: ${text}`))));
    });
    const { downMs, tookMs } = JSON.parse(out.trim().split("\n").pop()!) as { downMs: number; tookMs: number };
    assert.ok(downMs >= 40_000, `down ${downMs} ms`);
    // The next attempt, then a connection and its handshake on a busy machine; the driver's default took 26 s here.
    assert.ok(tookMs <= RECONNECT_MAX_DELAY_MS * JITTER + 4_000, `answered ${tookMs} ms after the node came back from ${downMs} ms away`);
  });
});
