import assert from "node:assert/strict";
import { pino } from "pino";
import { OutageLog, type OutageLogOptions } from "./outage-log.js";

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
