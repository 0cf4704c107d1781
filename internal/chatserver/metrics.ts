import { Gauge, type Registry } from "prom-client";

export interface ChatServerMetrics {
  sessions: Gauge;
}

export function chatServerMetrics(registry: Registry): ChatServerMetrics {
  return {
    sessions: new Gauge({ name: "chat_sessions", help: "Open device sessions on this chat server", registers: [registry] }),
  };
}
