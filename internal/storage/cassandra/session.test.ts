import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { join } from "node:path";
import cassandra from "cassandra-driver";
import { engineConfig } from "../../../test/support/engines.js";
import { waitFor } from "../../../test/support/wait.js";
import { createClient, Db, RECONNECT_MAX_DELAY_MS, StorageUnavailable, type Client } from "./session.js";

/** The driver's own jitter on a reconnection delay: +/- 15 %. */
const JITTER = 1.15;

describe("cassandra client", function () {
  this.timeout(200_000);
  let probe: ChildProcess | undefined;
  /** The outage probe, started before the other tests so they run during its long outage; its test is last. */
  let outage: { child: ChildProcess; text: string; answeredAt?: number; exitedAt?: number; exited: Promise<number | null> } | undefined;
  before(() => {
    // In a process of its own, so whatever the driver left running past shutdown()
    // shows as a process that does not exit.
    const child = spawn(process.execPath, ["--import", "tsx", join(import.meta.dirname, "session.outage-probe.ts")], {
      env: { ...process.env, CASSANDRA_TARGET: engineConfig().cassandraContactPoints[0]!, CASSANDRA_DC: engineConfig().cassandraDc },
      stdio: ["ignore", "pipe", "inherit"],
    });
    const exited = new Promise<number | null>((resolve, reject) => {
      child.on("error", reject);
      child.on("exit", (code) => {
        o.exitedAt = Date.now();
        resolve(code);
      });
    });
    exited.catch(() => {});
    const o: NonNullable<typeof outage> = { child, text: "", exited };
    // When the answer came, not when the test got to it: the probe's exit is timed from its client's shutdown.
    child.stdout!.on("data", (d) => {
      o.text += String(d);
      if (o.answeredAt === undefined && o.text.includes("\n")) o.answeredAt = Date.now();
    });
    outage = o;
  });
  after(() => {
    for (const p of [probe, outage?.child]) if (p && p.exitCode === null && p.signalCode === null) p.kill("SIGKILL");
  });

  it("tries a node that went down again every few seconds at most, however long it stays down", () => {
    const client = createClient({ contactPoints: ["127.0.0.1:1"], localDataCenter: "dc" });
    const policy = (client as unknown as { options: { policies: { reconnection: { newSchedule(): Iterator<number> } } } }).options.policies.reconnection;
    const schedule = policy.newSchedule();
    const delays = Array.from({ length: 40 }, () => schedule.next().value as number);
    // The driver's default doubled to 10 minutes: a cluster back after a few minutes away went unused for as long again.
    assert.ok(Math.max(...delays) <= RECONNECT_MAX_DELAY_MS * JITTER, `delays ${delays.join(", ")}`);
  });

  it("takes a request a replica failed for an outage, a write's with an unknown outcome, and keeps the driver's error as its cause", async () => {
    const failing = (code: number) => new Db({
      options: { encoding: { useBigIntAsLong: true } },
      execute: () => Promise.reject(new cassandra.errors.ResponseError(code, "replica said no")),
      batch: () => Promise.reject(new cassandra.errors.ResponseError(code, "replica said no")),
    } as unknown as Client, "ks");
    const { readFailure, writeFailure } = cassandra.types.responseErrorCodes;
    // Before, both went out as they came: an internal error at the edges, and a create
    // whose logged batch a replica failed released the name its row may still land with.
    const write = await failing(writeFailure).batch([{ query: "INSERT", params: [] }], { logged: true }).catch((e: unknown) => e);
    assert.ok(write instanceof StorageUnavailable && write.unknownOutcome && write.code === "unavailable", String(write));
    assert.ok(write.cause instanceof cassandra.errors.ResponseError);
    const read = await failing(readFailure).one("SELECT", []).catch((e: unknown) => e);
    assert.ok(read instanceof StorageUnavailable && !read.unknownOutcome, String(read));
  });

  it("takes a coordinator's server error, an overload and a timeout for an outage (a write's server error with an unknown outcome), not an internal error", async () => {
    const failing = (code: number) => new Db({
      options: { encoding: { useBigIntAsLong: true } },
      execute: () => Promise.reject(new cassandra.errors.ResponseError(code, "node said no")),
      batch: () => Promise.reject(new cassandra.errors.ResponseError(code, "node said no")),
    } as unknown as Client, "ks");
    const c = cassandra.types.responseErrorCodes;
    // Before, a server error went out as it came and reached clients as INTERNAL.
    const write = await failing(c.serverError).lwt("UPDATE ks.t SET v = ? WHERE k = ? IF v = ?", [1, 2, 3]).catch((e: unknown) => e);
    assert.ok(write instanceof StorageUnavailable && write.unknownOutcome && write.code === "unavailable", String(write));
    const read = await failing(c.serverError).rows("SELECT v FROM ks.t WHERE k = ?", [1]).catch((e: unknown) => e);
    assert.ok(read instanceof StorageUnavailable && !read.unknownOutcome, String(read));
    for (const [code, unknown] of [[c.overloaded, false], [c.unavailableException, false], [c.readTimeout, false], [c.writeTimeout, true], [0x1700, true]] as const) {
      const e = await failing(code).write("INSERT INTO ks.t (k, v) VALUES (?, ?)", [1, 2]).catch((x: unknown) => x);
      assert.ok(e instanceof StorageUnavailable && e.unknownOutcome === unknown, `${code}: ${String(e)}`);
    }
    const bug = await failing(c.invalid).rows("SELECT v FROM ks.t", []).catch((e: unknown) => e);
    assert.ok(!(bug instanceof StorageUnavailable), "an invalid query is a bug, not an outage");
  });

  it("takes a connection lost under a request for an outage, with an unknown outcome once the request was written", async () => {
    const socketClosed = (requestNotWritten: boolean) => {
      // As the driver fails the requests a closing connection holds (Connection.clearAndInvokePending).
      const e = Object.assign(new (cassandra.errors.DriverError as unknown as new (m: string) => Error)("Socket was closed"), { isSocketError: true, requestNotWritten });
      return new Db({
        options: { encoding: { useBigIntAsLong: true } },
        execute: () => Promise.reject(e),
        batch: () => Promise.reject(e),
      } as unknown as Client, "ks");
    };
    // Before, it went out as it came: an internal error at the edges, and a claim whose
    // outcome was unknown was taken for one that never applied.
    const lwt = await socketClosed(false).lwt("UPDATE ks.t SET v = ? WHERE k = ? IF v = ?", [1, 2, 3]).catch((e: unknown) => e);
    assert.ok(lwt instanceof StorageUnavailable && lwt.unknownOutcome && lwt.code === "unavailable", String(lwt));
    assert.ok(lwt.cause instanceof cassandra.errors.DriverError);
    const unsent = await socketClosed(true).batch([{ query: "INSERT", params: [] }], { logged: true }).catch((e: unknown) => e);
    assert.ok(unsent instanceof StorageUnavailable && !unsent.unknownOutcome, String(unsent));
  });

  it("takes no host left to try after one that may have applied the request (a plain write sent again) as an unknown outcome", async () => {
    const noHostLeft = (inner: Error) => new Db({
      options: { encoding: { useBigIntAsLong: true } },
      execute: () => Promise.reject(new cassandra.errors.NoHostAvailableError({ "10.0.0.1:9042": inner })),
      batch: () => Promise.reject(new cassandra.errors.NoHostAvailableError({ "10.0.0.1:9042": inner })),
    } as unknown as Client, "ks");
    const closed = (requestNotWritten: boolean) => Object.assign(
      new (cassandra.errors.DriverError as unknown as new (m: string) => Error)("Socket was closed"), { isSocketError: true, requestNotWritten });
    // Before, any such answer said "never applied": a create whose logged batch went out on a
    // connection that then closed released the name its row may still land with.
    for (const inner of [closed(false), new cassandra.errors.OperationTimedOutError("timed out", "10.0.0.1:9042")]) {
      const e = await noHostLeft(inner).batch([{ query: "INSERT", params: [] }], { logged: true }).catch((x: unknown) => x);
      assert.ok(e instanceof StorageUnavailable && e.unknownOutcome, `${String(e)} after ${String(inner)}`);
    }
    const refused = await noHostLeft(closed(true)).batch([{ query: "INSERT", params: [] }], { logged: true }).catch((x: unknown) => x);
    assert.ok(refused instanceof StorageUnavailable && !refused.unknownOutcome, String(refused));
  });

  // The driver left a connection that closed before it was ready with a pending request and a
  // heartbeat timer, which held the process about 60 s after shutdown().
  for (const [probeCase, what] of [["reset", "Cassandra reset its connections"], ["connecting", "it was still connecting"]] as const) {
    it(`leaves nothing running after shutdown once ${what}`, async () => {
      const child = (probe = spawn(process.execPath, ["--import", "tsx", join(import.meta.dirname, "session.shutdown-probe.ts")], {
        env: { ...process.env, PROBE_CASE: probeCase, CASSANDRA_TARGET: engineConfig().cassandraContactPoints[0]!, CASSANDRA_DC: engineConfig().cassandraDc },
        stdio: ["ignore", "pipe", "inherit"],
      }));
      let text = "";
      child.stdout!.on("data", (d) => (text += String(d)));
      // "close" comes after its stdout is read to the end: a probe that prints and exits at once is no early exit.
      const exited = once(child, "close") as Promise<[number | null, NodeJS.Signals | null]>;
      await Promise.race([
        waitFor(() => text.includes("shut down"), "the probe's client shut down", 60_000, 20),
        exited.then(([code]) => assert.ok(text.includes("shut down"), `the probe exited ${code} before its client shut down`)),
      ]);
      const shutDownAt = performance.now();
      const bound = new Promise<"running">((resolve) => setTimeout(resolve, 15_000, "running").unref());
      const outcome = await Promise.race([exited, bound]);
      assert.notEqual(outcome, "running", `the probe still ran ${Math.round(performance.now() - shutDownAt)} ms after its client shut down`);
      assert.deepEqual(outcome, [0, null]);
    });
  }

  it("on a real Cassandra, answers again within seconds of the node coming back after a long outage, and leaves nothing running after shutdown", async () => {
    const child = outage!.child;
    await waitFor(() => outage!.answeredAt !== undefined || child.exitCode !== null, "the probe's answer", 180_000, 50);
    if (outage!.answeredAt === undefined) assert.fail(`the probe exited ${child.exitCode} without an answer`);
    const shutDownAt = outage!.answeredAt;
    const { downMs, tookMs } = JSON.parse(outage!.text.trim()) as { downMs: number; tookMs: number };
    assert.ok(downMs >= 38_000, `down ${downMs} ms`);
    // The next attempt, then a connection and its handshake on a busy machine; the driver's default took 26 s here.
    assert.ok(tookMs <= RECONNECT_MAX_DELAY_MS * JITTER + 4_000, `answered ${tookMs} ms after the node came back from ${downMs} ms away`);
    // The driver's host replaced after the outage kept a 200 ms interval and a pool reconnecting for ever.
    await waitFor(() => outage!.exitedAt !== undefined, "the probe to exit by itself after its client shut down", Math.max(0, shutDownAt + 10_000 - Date.now()), 50)
      .catch(() => assert.fail(`the probe still ran ${Date.now() - shutDownAt} ms after its client shut down`));
    assert.ok(outage!.exitedAt! - shutDownAt <= 10_000, `the probe exited ${outage!.exitedAt! - shutDownAt} ms after its client shut down`);
    assert.equal(await outage!.exited, 0);
  });
});
