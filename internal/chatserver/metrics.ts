import { Counter, Gauge, type CounterConfiguration, type Registry } from "prom-client";
import { countedFromZero } from "../observability/metrics.js";
import { ERROR_CODE_NAMES, type ErrorCodeName } from "../model/errors.js";

export interface ChatServerMetrics {
  sessions: Gauge;
  /** Sends accepted (acked) from devices. */
  messagesIn: Tally;
  /** The same sends by kind: message, reply, edit, delete, reaction. */
  sendsByKind: Record<SendKind, Tally>;
  /** Inbox entries sent to devices, live or by catch-up. */
  entriesOut: Tally;
  /** Frames refused: malformed, rate-limited, or refused sends, by error code (each at 0 from the start). */
  refused: { inc(labels: { code: ErrorCodeName }): void };
  /** Cross-server send claims by outcome (distributed mode only). */
  sendClaims: Counter<"outcome">;
}

/** The kinds chat_sends_total counts, each from 0. */
export const SEND_KINDS = ["message", "reply", "edit", "delete", "reaction"] as const;
export type SendKind = (typeof SEND_KINDS)[number];

/**
 * A count made for every message or entry sent: kept in a number and added to
 * its counter when the counter is read (a scrape). prom-client's inc() made two
 * objects a call, and a labelled counter's its label string too, a few times
 * per message.
 */
export interface Tally {
  inc(by?: number): void;
}

class Counted implements Tally {
  n = 0;

  inc(by = 1): void {
    this.n += by;
  }
}

/** A counter without labels, counted by the tally returned. */
function tallied(registry: Registry, config: CounterConfiguration<never>): Tally {
  const t = new Counted();
  new Counter({
    ...config,
    registers: [registry],
    collect() {
      if (t.n > 0) this.inc(t.n);
      t.n = 0;
    },
  });
  return t;
}

export function chatServerMetrics(registry: Registry): ChatServerMetrics {
  const sends = Object.fromEntries(SEND_KINDS.map((kind) => [kind, new Counted()])) as Record<SendKind, Counted>;
  countedFromZero(
    new Counter({
      name: "chat_sends_total",
      help: "Sends accepted from devices, by kind: message, reply, edit, delete, reaction",
      labelNames: ["kind"],
      registers: [registry],
      collect() {
        for (const [kind, t] of Object.entries(sends)) {
          if (t.n > 0) this.inc({ kind }, t.n);
          t.n = 0;
        }
      },
    }),
    "kind",
    SEND_KINDS,
  );
  return {
    sessions: new Gauge({ name: "chat_sessions", help: "Open device sessions on this chat server", registers: [registry] }),
    messagesIn: tallied(registry, { name: "chat_messages_in_total", help: "Messages accepted from devices" }),
    sendsByKind: sends,
    entriesOut: tallied(registry, { name: "chat_entries_out_total", help: "Inbox entries sent to devices" }),
    refused: countedFromZero(
      new Counter({
        name: "chat_frames_refused_total",
        help: "Frames answered with an error, by code",
        labelNames: ["code"],
        registers: [registry],
      }),
      "code",
      ERROR_CODE_NAMES,
    ),
    sendClaims: countedFromZero(
      new Counter({
        name: "chat_send_claims_total",
        help: "Sends claimed across chat servers: new, held (a resend another server took first), failed (Redis away; the send kept its own id)",
        labelNames: ["outcome"],
        registers: [registry],
      }),
      "outcome",
      ["new", "held", "failed"],
    ),
  };
}
