import { Counter, Gauge, type Registry } from "prom-client";
import { countedFromZero } from "../observability/metrics.js";

export interface ChatServerMetrics {
  sessions: Gauge;
  /** Sends accepted (acked) from devices. */
  messagesIn: Counter;
  /** The same sends by kind: message, reply, edit, delete, reaction. */
  sendsByKind: Counter<"kind">;
  /** Inbox entries sent to devices, live or by catch-up. */
  entriesOut: Counter;
  /** Frames refused: malformed, rate-limited, or refused sends, by error code. */
  refused: Counter<"code">;
  /** Cross-server send claims by outcome (distributed mode only). */
  sendClaims: Counter<"outcome">;
}

export function chatServerMetrics(registry: Registry): ChatServerMetrics {
  return {
    sessions: new Gauge({ name: "chat_sessions", help: "Open device sessions on this chat server", registers: [registry] }),
    messagesIn: new Counter({ name: "chat_messages_in_total", help: "Messages accepted from devices", registers: [registry] }),
    sendsByKind: new Counter({
      name: "chat_sends_total",
      help: "Sends accepted from devices, by kind: message, reply, edit, delete, reaction",
      labelNames: ["kind"],
      registers: [registry],
    }),
    entriesOut: new Counter({ name: "chat_entries_out_total", help: "Inbox entries sent to devices", registers: [registry] }),
    refused: new Counter({
      name: "chat_frames_refused_total",
      help: "Frames answered with an error, by code",
      labelNames: ["code"],
      registers: [registry],
    }),
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
