import type { ChannelStore } from "../channels/store.js";
import type { IdGenerator } from "../ids/snowflake.js";
import type { MessageLog } from "../messages/log.js";
import type { MemberRecord, MemberRole, NewMessage } from "../model/types.js";
import { decodeSubmitted } from "../pipeline/records.js";
import type { MessageQueue, OutgoingRecord } from "../queue/port.js";
import type { SendClaims } from "../sendclaims/port.js";
import { QueueSubmitter } from "./submitter.js";

export const GROUP = 10n;

/**
 * A QueueSubmitter on the group GROUP (made by user 1) whose roster is `roster`, read afresh at every
 * member read: a test changes it, as the api does, between a send's read and its publish.
 * `published` holds each published message's `pick`; `log` replaces the empty log's calls.
 */
export function groupSubmitter(opts: {
  roster: Map<bigint, MemberRole>;
  pick: (m: NewMessage) => string;
  log?: Partial<MessageLog>;
  onMemberRead?: (userId: bigint) => void;
  claims?: SendClaims;
}) {
  const { roster } = opts;
  const row = (userId: bigint): MemberRecord => ({ channelId: GROUP, userId, role: roster.get(userId)!, joinedAtMs: 1, readSeq: 0n });
  const channels = {
    getChannel: async () => ({ channelId: GROUP, kind: "group", title: "g", createdAtMs: 1, createdBy: 1n }),
    listMembers: async () => [...roster.keys()].map(row),
    getMember: async (_c: bigint, userId: bigint) => {
      opts.onMemberRead?.(userId);
      return roster.has(userId) ? row(userId) : undefined;
    },
  } as unknown as ChannelStore;
  const published: string[] = [];
  let id = 100n;
  const s = new QueueSubmitter({
    queue: {
      publish: async (_t: string, rs: readonly OutgoingRecord[]) => void published.push(...rs.map((r) => opts.pick(decodeSubmitted(r.value)))),
    } as MessageQueue,
    channels,
    log: { editsOf: async () => [], findByClientMsgId: async () => undefined, findChange: async () => undefined, ...opts.log } as MessageLog,
    ids: { next: () => ++id } as unknown as IdGenerator,
    claims: opts.claims,
  });
  return { s, published };
}
