import { readdir } from "node:fs/promises";
import { collectDefaultMetrics, Gauge, Registry } from "prom-client";

/**
 * prom-client's default metrics that walk every handle, resource or file
 * descriptor of the process at each scrape, on the event loop: at 16,000
 * sockets a scrape held it 40 to 110 ms (18 ms for the handles by type, 14
 * for their count, 8 and 6 for the resources, 27 for the descriptors), a
 * stall every session of the process waited behind once per scrape interval,
 * growing with the sessions held. Sessions are counted by our own gauges.
 */
const WALKING_EVERY_HANDLE = [
  "nodejs_active_handles",
  "nodejs_active_handles_total",
  "nodejs_active_resources",
  "nodejs_active_resources_total",
  "process_open_fds",
] as const;

/**
 * A gauge under a counter's name (`_total`): `rate()` over it reads its every
 * fall as a counter reset, and promtool's lint refuses it.
 * `nodejs_active_requests`, by type, holds the same count.
 */
const GAUGES_NAMED_AS_COUNTERS = ["nodejs_active_requests_total"] as const;

/**
 * A registry with the process and Node.js metrics every role exposes, minus
 * those that stall the event loop in proportion to its sockets. The count of
 * open file descriptors stays (the limit a process of many sockets meets
 * first), read off the event loop.
 */
export function processMetricsRegistry(): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  for (const name of [...WALKING_EVERY_HANDLE, ...GAUGES_NAMED_AS_COUNTERS]) registry.removeSingleMetric(name);
  if (process.platform === "linux") {
    new Gauge({
      name: "process_open_fds",
      help: "Number of open file descriptors.",
      registers: [registry],
      async collect() {
        try {
          // Less the descriptor the read itself holds, which is listed.
          this.set((await readdir("/proc/self/fd")).length - 1);
        } catch (err) {
          // EMFILE at the limit this counts toward: a collect that throws fails the whole scrape. The
          // count is then the limit; the last one read, below it, showed a process out of descriptors
          // as one with room to spare.
          if ((err as NodeJS.ErrnoException).code !== "EMFILE") return;
          const max = (await registry.getSingleMetric("process_max_fds")?.get())?.values[0]?.value;
          if (max !== undefined) this.set(max);
        }
      },
    });
  }
  return registry;
}
