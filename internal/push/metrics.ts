import { Counter, Gauge, type Registry } from "prom-client";
import type { NotifierDeps } from "./notifier.js";

/**
 * The notifier's Prometheus metrics, the same in chatd and cmd/notifier:
 * sends by provider and outcome, notifications not sent and why, and what is
 * in memory (`pending`, read at each scrape). Returns the hooks to pass to
 * the Notifier.
 */
export function pushMetrics(registry: Registry, pending: () => number): Required<Pick<NotifierDeps, "onResult" | "onSkipped">> {
  const sends = new Counter({
    name: "chat_push_sends_total",
    help: "Push requests by provider and what the notifier did about the answer",
    labelNames: ["kind", "action"],
    registers: [registry],
  });
  const skipped = new Counter({
    name: "chat_push_skipped_total",
    help: "Notifications due and not sent (per endpoint for muted, no_provider, revoked_device, superseded, backlog and stopped; reassigned per window or endpoint), by reason",
    labelNames: ["reason"],
    registers: [registry],
  });
  const goneUnconfirmed = new Counter({
    name: "chat_push_gone_unconfirmed_total",
    help: "Endpoints kept though their push service called them dead, in words that can also mean wrong settings of ours (APNs BadDeviceToken, DeviceTokenNotForTopic), before a push went through since start",
    labelNames: ["kind", "reason"],
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
  };
}
