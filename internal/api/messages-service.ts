import { create } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import { MessageService, PageDirection } from "../../gen/es/chat/v1/messages_pb.js";
import { ChannelEventKind, ReceiptEventSchema, ServerFrameSchema } from "../../gen/es/chat/v1/session_pb.js";
import { channelView, pushChannelEvent, receiptAudience, requireMember } from "./access.js";
import { caller } from "./context.js";
import { inboxEntryToProto, messageToProto } from "./convert.js";
import type { ApiDeps } from "./deps.js";
import * as v from "./validate.js";
import { refusedUncharged } from "../chatserver/validate.js";
import { expiredThrough } from "../messages/inbox.js";
import { PAGE_TEXT_BYTES, withinTextBytes } from "../messages/page-bytes.js";
import { sentAfter } from "../messages/own-messages.js";
import { ChatError } from "../model/errors.js";
import { ThrottledWarning } from "../observability/outage-log.js";
import { LruMap } from "../cache/lru-map.js";
import { utf8BytesAtMost, type StoredMessage } from "../model/types.js";

/** Messages one SearchMessages call reads at most: a bound on what a call costs the store. */
const SEARCH_SCAN_BUDGET = 2_000;
/**
 * Text one SearchMessages call folds at most (utf8BytesAtMost): a message
 * costs by its length, or its folded text's when longer, and 2,000 of the
 * longest would be 600 MB. At least one message is scanned, so every call
 * moves on.
 */
export const SEARCH_SCAN_TEXT_BYTES = 4 * 1024 * 1024;
const SEARCH_PAGE = 200;

/**
 * Case and compatibility forms folded away, so "Cafe" finds "cafe" and "ﬁle"
 * finds "file". Lower case alone is no fold: "ß" stays while SS lowers to
 * "ss", a Σ ending a word lowers to "ς" (so the query "ΟΔΟΣ" missed
 * "ΟΔΟΣΤΡΩΜΑ"), and "İ" lowers to "i" with a combining dot ("istanbul"
 * missed "İSTANBUL"). Lower, upper, lower again turns ẞ and ß into ss; ς is
 * taken as σ and the dot dropped, as Unicode's full case folding (with its
 * Turkic rule for İ) does. Characters that show nothing (a soft hyphen, a
 * zero-width space, an emoji's variation selector) go, as in Unicode's
 * NFKC_Casefold: "lunch" finds "lun\u200Bch" pasted from a page. NFKC again
 * composes what the casing took apart.
 */
const fold = (s: string) =>
  s
    .normalize("NFKC")
    .toLowerCase()
    .toUpperCase()
    .toLowerCase()
    .replaceAll("ς", "σ")
    .replaceAll("i\u0307", "i")
    .replace(/\p{Default_Ignorable_Code_Point}/gu, "")
    .normalize("NFKC");

function searchWords(query: string): string[] {
  if ([...query].length > 256) throw new ChatError("invalid_argument", "query must be at most 256 characters");
  const words = fold(query).split(/\s+/u).filter((w) => w.length > 0);
  if (words.length === 0) throw new ChatError("invalid_argument", "query must have at least one word");
  return words;
}

export function messageService(deps: ApiDeps): Partial<ServiceImpl<typeof MessageService>> {
  // The routes unreadable fail every MarkRead's push: one line for them, not one each.
  const receiptPushFailed = new ThrottledWarning({ logger: deps.logger, message: "receipt push failed" });
  const readMarkPublishFailed = new ThrottledWarning({ logger: deps.logger, message: "read mark not told to the notifier: held pushes of what was read may still go" });
  // Read marks stored whose fan-out never started ("channel:user"): the member list failed to read after the
  // write and the call was refused. Its retry moves nothing, so without this it told the reader alone.
  const untoldReads = new LruMap<string, true>(10_000);
  return {
    async listMessages(req, ctx) {
      const { channel, member } = await requireMember(deps, v.id("channel_id", req.channelId), caller(ctx).userId);
      const limit = v.limit(req.limit, 50, 200);
      if (req.direction !== PageDirection.UNSPECIFIED && req.direction !== PageDirection.BACKWARD && req.direction !== PageDirection.FORWARD) {
        // A newer client's direction (or a typo'd number) is not taken for "backward": that page would be a silent wrong answer.
        throw new ChatError("invalid_argument", "direction must be PAGE_DIRECTION_BACKWARD or PAGE_DIRECTION_FORWARD");
      }
      const direction = req.direction === PageDirection.FORWARD ? "forward" : "backward";
      // The caller's history starts after what they cleared.
      const cleared = member.clearedSeq ?? 0n;
      const anchor = v.bound(req.anchorSeq);
      const anchorSeq = direction === "forward" && anchor < cleared ? cleared : anchor;
      // One extra row answers has_more without a count query.
      const read = await deps.log.page(channel.channelId, { anchorSeq, direction, limit: limit + 1, textBytes: PAGE_TEXT_BYTES });
      const rows = read.filter((m) => m.seq > cleared);
      const page = withinTextBytes(rows.slice(0, limit), (m) => m);
      return { messages: page.map(messageToProto), hasMore: rows.length > page.length };
    },

    async searchMessages(req, ctx) {
      const { channel, member } = await requireMember(deps, v.id("channel_id", req.channelId), caller(ctx).userId);
      const cleared = member.clearedSeq ?? 0n;
      const words = searchWords(req.query);
      const limit = v.limit(req.limit, 20, 100);
      const found: StoredMessage[] = [];
      let foundBytes = 0;
      // Nothing is older than seq 1, nor for the caller than what they cleared: a scan that stops there has reached the first message.
      const result = (next: bigint) => ({ messages: found.map(messageToProto), nextBeforeSeq: next > cleared + 1n ? next : 0n });
      let before = v.bound(req.beforeSeq);
      for (let scanned = 0, bytes = 0; scanned < SEARCH_SCAN_BUDGET; ) {
        // Past the text left to scan the loop below returns, so the page stops there too.
        const textBytes = SEARCH_SCAN_TEXT_BYTES - bytes;
        // The store goes on as one read would: on Cassandra a page read afresh reads the head again and fetches 8 rows first (102 requests for 2,000 short messages, 74 so).
        const rows = await deps.log.page(channel.channelId, { anchorSeq: before, direction: "backward", limit: SEARCH_PAGE, textBytes, scanned });
        for (const m of rows) {
          if (m.seq <= cleared) return result(0n);
          if (scanned > 0 && bytes + utf8BytesAtMost(m.text) > SEARCH_SCAN_TEXT_BYTES) return result(before);
          // The folded text is what the scan works on: NFKC makes some characters 18.
          const text = fold(m.text);
          const cost = Math.max(utf8BytesAtMost(m.text), utf8BytesAtMost(text));
          if (scanned > 0 && bytes + cost > SEARCH_SCAN_TEXT_BYTES) return result(before);
          before = m.seq;
          scanned++;
          bytes += cost;
          if (!words.every((w) => text.includes(w))) continue;
          // An answer holds as much text as a page of history: a match past that is the next call's first.
          foundBytes += utf8BytesAtMost(m.text);
          if (found.length > 0 && foundBytes > PAGE_TEXT_BYTES) return result(m.seq + 1n);
          if (found.push(m) >= limit) return result(before);
        }
        if (rows.length < SEARCH_PAGE || before <= 1n) return result(0n);
      }
      return result(before);
    },

    async sendMessage(req, ctx) {
      // The submitter checks ids, seqs, membership, text and client_msg_id (validateSend), as on the realtime path;
      // a text no check could take (its length, a reaction's or a delete's) before the rates, as there, so that it takes none of the budget.
      const refusal = refusedUncharged(req);
      if (refusal) throw refusal;
      deps.limits?.takeSend(caller(ctx).userId, req.text);
      const result = await deps.submitter.submit(caller(ctx), {
        clientMsgId: req.clientMsgId,
        channelId: req.channelId,
        text: req.text,
        editSeq: req.editSeq,
        deleteSeq: req.deleteSeq,
        replyToSeq: req.replyToSeq,
        reactSeq: req.reactSeq,
      });
      return { messageId: result.messageId, duplicate: result.duplicate };
    },

    async syncInbox(req, ctx) {
      const me = caller(ctx).userId;
      const limit = v.limit(req.limit, 200, 1000);
      const after = v.bound(req.afterInboxSeq);
      const [rows, head] = await Promise.all([
        deps.inbox.readAfter(me, after, limit + 1, PAGE_TEXT_BYTES),
        deps.inbox.head(me),
      ]);
      const page = withinTextBytes(rows.slice(0, limit), (e) => e.message);
      return {
        entries: page.map(inboxEntryToProto),
        headInboxSeq: head,
        hasMore: rows.length > page.length,
        expiredThrough: expiredThrough(after, page),
      };
    },

    async markRead(req, ctx) {
      const me = caller(ctx).userId;
      const { channel, member } = await requireMember(deps, v.id("channel_id", req.channelId), me);
      // The store stops it at the newest message, as for the realtime ReadReceipt.
      const [{ readSeq, newest }, places] = await Promise.all([deps.channels.advanceReadSeq(channel.channelId, me, v.bound(req.seq)), deps.channels.listPlaces(me)]);
      // Reading takes away the caller's mark (MarkUnread), and their other devices stop showing it.
      if (places.get(channel.channelId)?.markedUnreadAtMs !== undefined) {
        await deps.channels.changePlace(me, channel.channelId, { markedUnreadAtMs: null });
        await pushChannelEvent(deps, [me], ChannelEventKind.UPDATED, await channelView(deps, channel, member));
      }
      // As the realtime ReadReceipt: the reader's own devices hear it either way (it was taken), the other
      // members only when it moved what they are shown. That is the furthest of the stored position and
      // the reader's own newest message (membersAsRead, as ListMembers has it): a receipt below their own
      // message moved the other members' view of them back.
      // The reader's alone is asked of (sentAfter), beside the member list the receipt goes to: membersAsRead
      // read that list a second time, and every member's newest message, at every read mark.
      // Once per move, beside the receipt's reads: best effort, as a push is; a failure refuses nothing.
      const toldNotifier =
        readSeq > member.readSeq && deps.readMoved
          ? deps.readMoved(me, channel.channelId, readSeq).catch((e: unknown) => readMarkPublishFailed.warn({ err: e }))
          : undefined;
      let audience = [me];
      const untold = `${channel.channelId}:${me}`;
      if (readSeq > member.readSeq || untoldReads.peek(untold) !== undefined) {
        try {
          const [members, ownAhead] = await Promise.all([deps.channels.listMembers(channel.channelId), sentAfter(deps.log, channel.channelId, me, readSeq, newest)]);
          const stored = members.find((m) => m.userId === me)?.readSeq ?? readSeq;
          if (stored <= readSeq && !ownAhead) audience = await receiptAudience(deps, channel, me, members);
        } catch (e) {
          untoldReads.set(untold, true);
          throw e;
        }
        untoldReads.delete(untold);
      }
      const frame = create(ServerFrameSchema, {
        kind: { case: "receipt", value: create(ReceiptEventSchema, { channelId: channel.channelId, userId: me, seq: readSeq }) },
      });
      await deps.sessions.pushToUsers(audience, frame).catch((e: unknown) => receiptPushFailed.warn({ err: e }));
      await toldNotifier;
      return { readSeq };
    },
  };
}
