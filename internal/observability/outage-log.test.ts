import assert from "node:assert/strict";
import { pino } from "pino";
import { EngineOutageWarning, OutageLog, ThrottledWarning, type OutageLogOptions, type ThrottledWarningOptions } from "./outage-log.js";
import { waitFor } from "../../test/support/wait.js";

type Line = Record<string, unknown> & { level: number; msg: string };

/** An OutageLog on a clock the test moves, whose lines are kept (level, message and fields). */
function outageLog(options: Partial<OutageLogOptions> = {}) {
  const lines: Line[] = [];
  const logger = pino({ level: "debug", base: undefined, timestamp: false }, { write: (line: string) => void lines.push(JSON.parse(line)) });
  const clock = { ms: 1_000 };
  const log = new OutageLog({ logger, failed: "x away", failedAgain: "x still away", recovered: "x back", now: () => clock.ms, ...options });
  const summary = () => lines.map((l) => `${l.level} ${l.msg}`);
  return { log, lines, clock, summary };
}

describe("OutageLog", () => {
  it("says nothing while the calls succeed", () => {
    const { log, lines } = outageLog();
    log.succeeded();
    log.succeeded();
    assert.deepEqual(lines, []);
  });

  it("warns once as an outage starts, debugs the tries after, and logs one line with its length as it ends", () => {
    const { log, lines, clock, summary } = outageLog();
    log.failed(new Error("ECONNREFUSED"));
    clock.ms += 1_000;
    log.failed(new Error("ECONNREFUSED"));
    clock.ms += 1_000;
    log.failed(new Error("ECONNREFUSED"));
    clock.ms += 499.6;
    log.succeeded();
    log.succeeded();
    assert.deepEqual(summary(), ["40 x away", "20 x still away", "20 x still away", "30 x back"]);
    assert.equal((lines[0]!.err as { message: string }).message, "ECONNREFUSED");
    assert.deepEqual([lines[1]!.failures, lines[2]!.failures], [2, 3]);
    assert.equal(lines[3]!.failures, 3);
    assert.equal(lines[3]!.failingMs, 2_500);
  });

  it("counts the next outage afresh, on its own clock", () => {
    const { log, lines, clock, summary } = outageLog();
    log.failed(new Error("first"));
    clock.ms += 5_000;
    log.succeeded();
    log.failed(new Error("second"));
    clock.ms += 10;
    log.succeeded();
    assert.deepEqual(summary(), ["40 x away", "30 x back", "40 x away", "30 x back"]);
    assert.deepEqual([lines[3]!.failures, lines[3]!.failingMs], [1, 10]);
  });

  it("forget ends an outage without a line: the next failure is warned of, and a success says nothing", () => {
    const { log, clock, summary } = outageLog();
    log.failed(new Error("away"));
    log.forget();
    clock.ms += 100;
    log.succeeded();
    log.failed(new Error("away"));
    assert.deepEqual(summary(), ["40 x away", "40 x away"]);
  });

  it("puts the caller's fields on every line (read as each is written), the length under its key, and the count only if asked", () => {
    let dir = "/a/";
    const { log, lines, clock } = outageLog({ fields: () => ({ dir }), counted: false, lengthKey: "outageMs" });
    log.failed(new Error("away"));
    dir = "/b/";
    log.failed(new Error("away"));
    clock.ms += 42;
    log.succeeded();
    const fields = lines.map(({ level, msg, err, ...rest }) => rest);
    assert.deepEqual(fields, [{ dir: "/a/" }, { dir: "/b/" }, { dir: "/b/", outageMs: 42 }]);
  });
});

describe("ThrottledWarning", () => {
  function throttled(options: Partial<ThrottledWarningOptions> = {}) {
    const lines: Line[] = [];
    const logger = pino({ level: "debug", base: undefined, timestamp: false }, { write: (line: string) => void lines.push(JSON.parse(line)) });
    const clock = { ms: 1_000 };
    const log = new ThrottledWarning({ logger, message: "x failed", now: () => clock.ms, ...options });
    return { log, lines, clock };
  }

  it("warns the first event, and with the next one past the window the count of those held back", () => {
    const { log, lines, clock } = throttled({ everyMs: 60_000 });
    for (let i = 0; i < 50_000; i++) log.warn({ userId: String(i) });
    assert.equal(lines.length, 1, "one line for 50,000 events in a window");
    assert.deepEqual([lines[0]!.level, lines[0]!.msg, lines[0]!.userId, lines[0]!.suppressed], [40, "x failed", "0", undefined]);
    clock.ms += 60_000;
    log.warn({ userId: "last" });
    assert.equal(lines.length, 2);
    assert.deepEqual([lines[1]!.userId, lines[1]!.suppressed], ["last", 49_999]);
  });

  it("tells the count of an outage that ended as its window ends, with no event after it", async () => {
    // A window the three warns fit in even on a loaded machine: one of them descheduled past it
    // would start a window of its own, a line with no count.
    const { log, lines } = throttled({ everyMs: 250, now: undefined });
    log.warn({ n: 1 });
    log.warn({ n: 2 });
    log.warn({ n: 3 });
    await waitFor(() => lines.length === 2, "the count at the window's end");
    assert.deepEqual([lines[1]!.n, lines[1]!.suppressed], [3, 2]);
  });

  it("is timed on the monotonic clock: a wall clock stepped forward lets no flood through", () => {
    const realNow = Date.now;
    const { log, lines } = throttled({ now: undefined });
    let wall = realNow();
    Date.now = () => wall;
    try {
      for (let i = 0; i < 5; i++) {
        log.warn({ i });
        wall += 3_600_000;
      }
    } finally {
      Date.now = realNow;
    }
    assert.equal(lines.length, 1);
  });
});

describe("EngineOutageWarning", () => {
  function outageWarning() {
    const lines: Line[] = [];
    const logger = pino({ level: "debug", base: undefined, timestamp: false }, { write: (line: string) => void lines.push(JSON.parse(line)) });
    const clock = { ms: 1_000 };
    const w = new EngineOutageWarning({ logger, message: "refused: a store did not answer", now: () => clock.ms });
    return { w, lines };
  }
  const refused = () => Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:9042"), { code: "ECONNREFUSED" });

  it("answers an engine outage with the retryable refusal and warns once a window, with the fields given", () => {
    const { w, lines } = outageWarning();
    for (let i = 0; i < 3; i++) {
      const e = w.refusal(refused(), { userId: String(i) });
      assert.deepEqual([e?.code, e?.retryAfterMs], ["unavailable", 1_000]);
    }
    assert.equal(lines.length, 1);
    assert.deepEqual([lines[0]!.level, lines[0]!.msg, lines[0]!.userId, (lines[0]!.err as { code?: string }).code], [40, "refused: a store did not answer", "0", "ECONNREFUSED"]);
  });

  it("answers anything else undefined and says nothing of it", () => {
    const { w, lines } = outageWarning();
    assert.equal(w.refusal(new Error("a bug"), { userId: "1" }), undefined);
    assert.equal(lines.length, 0);
  });
});
