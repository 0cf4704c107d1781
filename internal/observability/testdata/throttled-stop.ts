// A process that held back a ThrottledWarning's count when it is asked to stop, for
// lifecycle.test.ts: the count, untold for a minute yet, must be warned before it exits.
import { pino } from "pino";
import { stopOnSignals } from "../lifecycle.js";
import { ThrottledWarning } from "../outage-log.js";

const logger = pino();
const warning = new ThrottledWarning({ logger, message: "x failed", everyMs: 600_000 });
for (let i = 0; i < 3; i++) warning.warn({ i });
stopOnSignals(logger, async () => {});
setInterval(() => {}, 1_000); // stays alive until a signal ends it
console.log("ready");
