// A process whose stop never finishes, for lifecycle.test.ts: argv[2] is the stop timeout in ms.
import { pino } from "pino";
import { stopOnSignals } from "../lifecycle.js";

stopOnSignals(pino(), () => new Promise<void>(() => {}), { timeoutMs: Number(process.argv[2]) });
setInterval(() => {}, 1_000); // stays alive until a signal ends it
console.log("ready");
