import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { ThrottledWarning, type ThrottledWarningOptions } from "./outage-log.js";

type Line = Record<string, unknown> & { level: number; msg: string };

const THROTTLED_STOP = fileURLToPath(new URL("./testdata/throttled-stop.ts", import.meta.url));

/** A ThrottledWarning on a clock the test moves, whose lines are kept. */
function throttled(options: Partial<ThrottledWarningOptions> = {}) {
  const lines: Line[] = [];
  const logger = pino({ level: "debug", base: undefined, timestamp: false }, { write: (line: string) => void lines.push(JSON.parse(line)) });
  const clock = { ms: 1_000 };
  const log = new ThrottledWarning({ logger, message: "x failed", everyMs: 60_000, now: () => clock.ms, ...options });
  return { log, lines, clock };
}

describe("ThrottledWarning.close", () => {
  it("warns the count held back at once, and nothing when none is held", () => {
    const { log, lines, clock } = throttled();
    log.close();
    log.warn({ n: 1 });
    log.close();
    assert.equal(lines.length, 1, "the first event was warned; nothing was held");
    log.warn({ n: 2 });
    log.warn({ n: 3 });
    log.close();
    assert.deepEqual(lines.map((l) => [l.n, l.suppressed]), [[1, undefined], [3, 2]]);
    // The count told starts a new window: the next event is counted, and told by the next close.
    clock.ms += 1;
    log.warn({ n: 4 });
    assert.equal(lines.length, 2);
    log.close();
    assert.deepEqual(lines.map((l) => [l.n, l.suppressed]), [[1, undefined], [3, 2], [4, 1]]);
  });

  it("closeAll() warns the count of every ThrottledWarning holding one, once", () => {
    const a = throttled({ message: "a failed" });
    const b = throttled({ message: "b failed" });
    const quiet = throttled({ message: "quiet" });
    for (const w of [a, b]) for (let i = 0; i < 3; i++) w.log.warn({ i });
    quiet.log.warn({ i: 0 });
    ThrottledWarning.closeAll();
    ThrottledWarning.closeAll();
    assert.deepEqual([...a.lines, ...b.lines, ...quiet.lines].map((l) => [l.msg, l.suppressed]), [
      ["a failed", undefined],
      ["a failed", 2],
      ["b failed", undefined],
      ["b failed", 2],
      ["quiet", undefined],
    ]);
  });

  let child: ChildProcess | undefined;
  // Also when the test timed out waiting: a child that never got ready or ignored the signal lives on
  // (its interval), and its pipe holds mocha open after its summary.
  after(() => void (child?.exitCode === null && child.signalCode === null && child.kill("SIGKILL")));

  it("a process stopped on a signal (stopOnSignals) warns the count held back before it exits", async function () {
    this.timeout(30_000);
    child = spawn(process.execPath, ["--import", "tsx", THROTTLED_STOP], { stdio: ["ignore", "pipe", "inherit"] });
    const lines: string[] = [];
    const ready = new Promise<void>((resolve) => createInterface({ input: child!.stdout! }).on("line", (l) => (lines.push(l), l === "ready" && resolve())));
    const exited = once(child, "exit") as Promise<[number | null]>;
    await Promise.race([ready, exited.then(([c]) => Promise.reject(new Error(`exited (${c}) before ready: ${lines.join("\n")}`)))]);
    child.kill("SIGTERM");
    const [code] = await exited;
    assert.equal(code, 0, lines.join("\n"));
    const counts = lines.filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as Line).filter((l) => l.msg === "x failed").map((l) => [l.i, l.suppressed]);
    assert.deepEqual(counts, [[0, undefined], [2, 2]], lines.join("\n"));
  });
});
