import { Counter, Gauge, type Registry } from "prom-client";
import { SEND_ACTIONS, SKIP_REASONS, type NotifierDeps } from "./notifier.js";
import { PUSH_KINDS, UNCONFIRMED_GONE_REASONS } from "./port.js";
import { countedFromZero } from "../observability/metrics.js";

/**
 * The notifier's Prometheus metrics, the same in chatd and cmd/notifier:
 * sends by provider and outcome, notifications not sent and why, records it
 * could not decode, and what is in memory (`pending`, read at each scrape). Returns the hooks to pass to
 * the Notifier.
 */
export function pushMetrics(registry: Registry, pending: () => number): Required<Pick<NotifierDeps, "onResult" | "onSkipped" | "onRecordSkipped">> {
  const sends = new Counter({
    name: "chat_push_sends_total",
    help: "Push requests by provider and what the notifier did about the answer",
    labelNames: ["kind", "action"],
    registers: [registry],
  });
  // Every series at 0 from the start (12 of them): the first dropped push of a process moves increase().
  for (const kind of PUSH_KINDS) for (const action of SEND_ACTIONS) sends.inc({ kind, action }, 0);
  const skipped = countedFromZero(
    new Counter({
      name: "chat_push_skipped_total",
      help: "Notifications due and not sent (per endpoint for muted, no_provider, revoked_device, superseded, backlog and stopped; reassigned per window or endpoint), by reason",
      labelNames: ["reason"],
      registers: [registry],
    }),
    "reason",
    SKIP_REASONS,
  );
  const goneUnconfirmed = new Counter({
    name: "chat_push_gone_unconfirmed_total",
    help: "Endpoints kept though their push service called them dead, in words that can also mean wrong settings of ours (APNs BadDeviceToken, DeviceTokenNotForTopic), before a push went through since start",
    labelNames: ["kind", "reason"],
    registers: [registry],
  });
  // APNs's only: no other service answers in such words, and web_push or fcm series would stay 0 for good.
  for (const reason of UNCONFIRMED_GONE_REASONS) goneUnconfirmed.inc({ kind: "apns", reason }, 0);
  // Its own name rather than chat_pipeline_records_skipped_total{stage="notifier"}: chatd registers
  // both the pipeline's metrics and these in one registry, and a name is registered once.
  const recordsSkipped = new Counter({
    name: "chat_push_records_skipped_total",
    help: "Notification records the notifier could not decode and went past",
    registers: [registry],
  });
  new Gauge({
    name: "chat_push_pending",
    help: "Notifications in memory: collapsing, queued, retrying or in flight",
    registers: [registry],
    collect() {
      this.set(pending());
    },
  });
  return {
    onResult: (r) => {
      sends.inc({ kind: r.endpoint.kind, action: r.action });
      if (!r.outcome.ok && r.outcome.goneUnconfirmed) goneUnconfirmed.inc({ kind: r.endpoint.kind, reason: r.outcome.goneUnconfirmed });
    },
    onSkipped: (reason) => skipped.inc({ reason }),
    onRecordSkipped: () => recordsSkipped.inc(),
  };
}

/** What the notifier reads from engines when a notification is due: see countingEngineErrors. */
export const NOTIFIER_ENGINE_OPS = ["endpoints", "device", "mutes", "online"] as const;
export type NotifierEngineOp = (typeof NOTIFIER_ENGINE_OPS)[number];

/**
 * `chat_push_engine_errors_total{op}` and a wrapper that counts the failures
 * of a store's calls, or of one function, under `op`: the endpoint store
 * (`endpoints`), the device check (`device`), the chat mutes (`mutes`) and
 * the routing table (`online`). The notifier retries or fails open on each
 * of them, so a store away showed in no metric, only in /healthz 30 s on
 * (and for the endpoints, at debug level only).
 */
export function notifierEngineErrors(registry: Registry): {
  count: (op: NotifierEngineOp) => void;
  counted: <T extends object>(op: NotifierEngineOp, target: T) => T;
} {
  const errors = new Counter({
    name: "chat_push_engine_errors_total",
    help: "Failed engine calls of the notifier, by what they read: endpoints, device, mutes, online",
    labelNames: ["op"],
    registers: [registry],
  });
  for (const op of NOTIFIER_ENGINE_OPS) errors.inc({ op }, 0);
  const count = (op: NotifierEngineOp) => errors.inc({ op });
  const wrap = (op: NotifierEngineOp, fn: (...args: unknown[]) => unknown, self: unknown) =>
    function (...args: unknown[]) {
      const out = fn.apply(self, args);
      // A derived promise: the caller still gets (and handles) the original.
      if (out instanceof Promise) out.catch(() => count(op));
      return out;
    };
  return {
    count,
    counted: <T extends object>(op: NotifierEngineOp, target: T): T =>
      typeof target === "function"
        ? (wrap(op, target as (...args: unknown[]) => unknown, undefined) as T)
        : new Proxy(target, {
            get(t, key) {
              const value = Reflect.get(t, key, t) as unknown;
              return typeof value === "function" ? wrap(op, value as (...args: unknown[]) => unknown, t) : value;
            },
          }),
  };
}
