import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import fs, { openSync, closeSync } from "node:fs";
import { promisify } from "node:util";
import { processMetricsRegistry } from "./process-metrics.js";

/** The value of an unlabelled metric in a scrape. */
async function valueOf(text: Promise<string>, name: string): Promise<number | undefined> {
  const line = (await text).split("\n").find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.split(" ")[1]);
}

describe("processMetricsRegistry", () => {
  it("leaves out the metrics that walk every handle and resource of the process at each scrape", async () => {
    const registry = processMetricsRegistry();
    for (const name of ["nodejs_active_handles", "nodejs_active_handles_total", "nodejs_active_resources", "nodejs_active_resources_total"]) {
      assert.equal(registry.getSingleMetric(name), undefined, name);
    }
    // What the roles and the bench read stays.
    const text = registry.metrics();
    assert.ok((await valueOf(text, "nodejs_heap_size_used_bytes"))! > 0);
    assert.ok((await valueOf(text, "process_cpu_seconds_total"))! >= 0);
  });

  it("counts open file descriptors, read off the event loop", async function () {
    if (process.platform !== "linux") this.skip();
    const registry = processMetricsRegistry();
    const before = (await valueOf(registry.metrics(), "process_open_fds"))!;
    const fds = Array.from({ length: 20 }, () => openSync("/dev/null", "r"));
    // prom-client's own reads the directory with readdirSync: 16,000 entries held the loop 27 ms.
    const readdirSync = fs.readdirSync;
    const syncReads: unknown[] = [];
    fs.readdirSync = ((path: fs.PathLike, ...rest: never[]) => {
      syncReads.push(path);
      return (readdirSync as (...a: unknown[]) => unknown)(path, ...rest);
    }) as typeof fs.readdirSync;
    try {
      const during = (await valueOf(registry.metrics(), "process_open_fds"))!;
      assert.ok(during >= before + 20, `${during} open after opening 20 more than ${before}`);
      assert.deepEqual(syncReads, [], "no directory read on the event loop");
    } finally {
      fs.readdirSync = readdirSync;
      for (const fd of fds) closeSync(fd);
    }
  });

  it("counts the descriptors open, not the one its own read of them takes", async function () {
    if (process.platform !== "linux") this.skip();
    const registry = processMetricsRegistry();
    // As prom-client's own does: readdirSync's descriptor is in its listing, and closed once it returns.
    const open = () => fs.readdirSync("/proc/self/fd").length - 1;
    // Read between two counts that agree: a socket of an earlier test closing meanwhile moves either.
    const seen: number[][] = [];
    for (let i = 0; i < 20; i++) {
      const before = open();
      const counted = (await valueOf(registry.metrics(), "process_open_fds"))!;
      const after = open();
      seen.push([before, counted, after]);
      if (before === after && counted === before) return;
    }
    assert.fail(`never counted as readdirSync does (before, counted, after): ${JSON.stringify(seen)}`);
  });

  it("still answers a scrape when the process is out of file descriptors, counting them at the limit", async function () {
    if (process.platform !== "linux") this.skip();
    this.timeout(30_000);
    // A process at its limit reads /proc/self/fd with EMFILE; /metrics then answered 500 (a scrape
    // comes on a connection kept alive), and the limit it met showed as the target down.
    const { stdout } = await promisify(execFile)("sh", ["-c", "ulimit -n 200 && exec node --import tsx internal/observability/testdata/fds-exhausted.ts"]);
    const result = JSON.parse(stdout) as { held: number; scraped: boolean; heap?: boolean; before?: number; open?: number; max?: number; err?: string };
    assert.ok(result.held > 0, stdout);
    assert.deepEqual({ scraped: result.scraped, heap: result.heap }, { scraped: true, heap: true }, stdout);
    // At the limit the count is the limit: the count read before, which stayed, showed room to spare.
    assert.ok(result.before! < 200, stdout);
    assert.deepEqual({ open: result.open, max: result.max }, { open: 200, max: 200 }, stdout);
  });
});
