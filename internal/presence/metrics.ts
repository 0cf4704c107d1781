import { Counter, type Registry } from "prom-client";
import { PRESENCE_ENGINE_OPS, type PresenceTrackerDeps } from "./tracker.js";
import { countedFromZero } from "../observability/metrics.js";

/** The statuses chat_presence_changes_total counts, each from 0. */
export const PRESENCE_STATUSES = ["online", "offline"] as const;
type PresenceStatus = (typeof PRESENCE_STATUSES)[number];

/**
 * The presence counters, as PresenceTracker hooks: the same names in `chatd`,
 * on chat servers and in `cmd/presence`.
 */
export function presenceMetrics(registry: Registry): Pick<PresenceTrackerDeps, "onChange" | "onSwept" | "onEngineError"> {
  const changes = countedFromZero(
    new Counter({ name: "chat_presence_changes_total", help: "Presence flips this process made and announced", labelNames: ["status"], registers: [registry] }),
    "status",
    PRESENCE_STATUSES,
  );
  const sweeps = new Counter({ name: "chat_presence_sweeps_total", help: "Sweeps for users whose grace period ran out, finished by this process", registers: [registry] });
  const errors = new Counter({
    name: "chat_presence_engine_errors_total",
    help: "Failed presence calls to engines (the store; for announcements also the audience read and the push), by what they were for",
    labelNames: ["op"],
    registers: [registry],
  });
  countedFromZero(errors, "op", PRESENCE_ENGINE_OPS);
  return {
    onChange: (c) => changes.inc({ status: (c.online ? "online" : "offline") satisfies PresenceStatus }),
    onSwept: () => sweeps.inc(),
    onEngineError: (op) => errors.inc({ op }),
  };
}
