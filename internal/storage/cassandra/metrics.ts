import { Counter, type Registry } from "prom-client";

/** What a SequencedAppender counts (CassandraMessageLog.stats, CassandraInbox.stats). */
export interface AppendStats {
  readonly overtaken: number;
  readonly helped: number;
  readonly groups: number;
}

/**
 * The appenders' counters, read at scrape time. Overtaken heads and helped
 * rows are what two writers of one partition at once leave behind (a
 * rebalance, a stalled worker): a steady rise means partitions keep moving.
 */
export function appendMetrics(registry: Registry, logs: Record<string, { readonly stats: AppendStats }>): void {
  const counter = (name: string, help: string, read: (s: AppendStats) => number) => {
    const seen = new Map<string, number>();
    new Counter({
      name,
      help,
      labelNames: ["log"],
      registers: [registry],
      collect() {
        for (const [log, source] of Object.entries(logs)) {
          const now = read(source.stats);
          this.inc({ log }, now - (seen.get(log) ?? 0));
          seen.set(log, now);
        }
      },
    });
  };
  counter("chat_append_overtaken_total", "Appends that found the stored head ahead of this writer's cache", (s) => s.overtaken);
  counter("chat_append_helped_total", "Rows written again for another writer that stopped half-way", (s) => s.helped);
  counter("chat_append_groups_total", "Groups of appends to one key stored together (one head write each)", (s) => s.groups);
}
