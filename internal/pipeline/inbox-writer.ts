import { create } from "@bufbuild/protobuf";
import type { Logger } from "pino";
import { ServerFrameSchema } from "../../gen/es/chat/v1/session_pb.js";
import type { SessionDirectory } from "../delivery/port.js";
import type { Inbox } from "../messages/inbox.js";
import type { Id, InboxEntry } from "../model/types.js";
import type { MessageQueue, QueueRecord, Subscription } from "../queue/port.js";
import type { PipelineMetrics } from "./metrics.js";
import { forEachByKey } from "./by-key.js";
import { decodeInboxAppend } from "./records.js";
import { inboxEntryToProto } from "../wire/messages.js";
import { ConsumerGroups, Topics } from "./topics.js";

export interface InboxWriterDeps {
  queue: MessageQueue;
  inbox: Inbox;
  sessions: SessionDirectory;
  /** Called for entries of users with no session online (push notifications). */
  onOffline?: (userId: Id, entry: InboxEntry) => Promise<void>;
  logger?: Logger;
  metrics?: PipelineMetrics;
}

/**
 * The InboxWriter is the single writer of each user's inbox it owns (its
 * partitions of `inbox`): it appends the entry with the user's next inbox
 * seq and hands it to the user's live sessions. Delivery is best effort:
 * the entry is already stored, and a session that misses it catches up
 * from its cursor.
 */
export class InboxWriter {
  private sub?: Subscription;

  constructor(private readonly deps: InboxWriterDeps) {}

  async start(): Promise<void> {
    this.sub = await this.deps.queue.subscribe(ConsumerGroups.inboxWriter, Topics.inbox, (rs) => this.handle(rs));
  }

  async stop(): Promise<void> {
    await this.sub?.stop();
  }

  private async handle(records: QueueRecord[]): Promise<void> {
    const appends = records.map((r) => decodeInboxAppend(r.value));
    const results = await forEachByKey(appends, (a) => a.userId, (a) => this.deps.inbox.append(a.userId, a.message));
    const fresh: { userId: Id; entry: InboxEntry }[] = [];
    results.forEach(({ entry, duplicate }, i) => {
      if (!duplicate) fresh.push({ userId: appends[i]!.userId, entry });
    });
    this.deps.metrics?.inboxAppends.inc(fresh.length);
    try {
      const items = fresh.map(({ userId, entry }) => ({
        userId,
        frame: create(ServerFrameSchema, {
          kind: {
            case: "message",
            value: { entry: inboxEntryToProto(entry) },
          },
        }),
      }));
      const { sessions } = this.deps;
      if (sessions.pushMany) await sessions.pushMany(items);
      else for (const i of items) await sessions.pushToUsers([i.userId], i.frame);
      const now = Date.now();
      for (const { entry } of fresh) {
        this.deps.metrics?.deliveryLatency.observe(Math.max(0, now - entry.message.sentAtMs) / 1000);
      }
      if (this.deps.onOffline && fresh.length > 0) {
        const online = await this.deps.sessions.onlineUsers([...new Set(fresh.map((f) => f.userId))]);
        // Side by side: on Kafka each publish is a round trip, and a group message has many offline members.
        const onOffline = this.deps.onOffline;
        await Promise.all(fresh.filter((f) => !online.has(f.userId)).map((f) => onOffline(f.userId, f.entry)));
      }
    } catch (err) {
      this.deps.metrics?.engineErrors.inc({ op: "deliver" });
      this.deps.logger?.warn({ err }, "live delivery failed; sessions will catch up from their cursors");
    }
  }
}
