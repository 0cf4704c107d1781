// Run with a low `ulimit -n`: takes every file descriptor left, then scrapes, and prints what came of it.
import { openSync } from "node:fs";
import { processMetricsRegistry } from "../process-metrics.js";

const registry = processMetricsRegistry();
const held: number[] = [];
for (;;) {
  try {
    held.push(openSync("/dev/null", "r"));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EMFILE") throw err;
    break;
  }
}
registry.metrics().then(
  (text) => console.log(JSON.stringify({ held: held.length, scraped: true, heap: /^nodejs_heap_size_used_bytes /m.test(text) })),
  (err: Error) => console.log(JSON.stringify({ held: held.length, scraped: false, err: err.message })),
);
