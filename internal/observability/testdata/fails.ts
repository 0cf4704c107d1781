// A process that meets something it cannot recover from, for lifecycle.test.ts: it stops
// as on a signal (printing "stopped"), and should then exit 1.
import { pino } from "pino";
import { stopOnSignals } from "../lifecycle.js";

// Says what /livez would read of the process while it stops.
const stopper = stopOnSignals(pino(), async () => console.log(`stopped: ${stopper.failure?.message}`));
setInterval(() => {}, 1_000); // stays alive until something ends it
setImmediate(() => stopper.fail(new Error("the consumer stopped for good")));
