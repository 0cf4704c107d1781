// Run with a low `ulimit -n`: takes every file descriptor left, then scrapes, and prints what came of it.
import { openSync } from "node:fs";
import { processMetricsRegistry } from "../process-metrics.js";

const registry = processMetricsRegistry();
const valueOf = (text: string, name: string) => Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1]);
// A count read before: the one a failed read left stayed.
const before = valueOf(await registry.metrics(), "process_open_fds");
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
  (text) =>
    console.log(
      JSON.stringify({
        held: held.length,
        scraped: true,
        heap: /^nodejs_heap_size_used_bytes /m.test(text),
        before,
        open: valueOf(text, "process_open_fds"),
        max: valueOf(text, "process_max_fds"),
      }),
    ),
  (err: Error) => console.log(JSON.stringify({ held: held.length, scraped: false, err: err.message })),
);
