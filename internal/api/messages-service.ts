import { create } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import { MessageService, PageDirection } from "../../gen/es/chat/v1/messages_pb.js";
import { ReceiptEventSchema, ServerFrameSchema } from "../../gen/es/chat/v1/session_pb.js";
import { requireMember } from "./access.js";
import { caller } from "./context.js";
import { inboxEntryToProto, messageToProto } from "./convert.js";
import type { ApiDeps } from "./deps.js";
import * as v from "./validate.js";
import { expiredThrough } from "../messages/inbox.js";

export function messageService(deps: ApiDeps): Partial<ServiceImpl<typeof MessageService>> {
  return {
    async listMessages(req, ctx) {
      const { channel } = await requireMember(deps, v.id("channel_id", req.channelId), caller(ctx).userId);
      const limit = v.limit(req.limit, 50, 200);
      const direction = req.direction === PageDirection.FORWARD ? "forward" : "backward";
      // One extra row answers has_more without a count query.
      const rows = await deps.log.page(channel.channelId, { anchorSeq: req.anchorSeq, direction, limit: limit + 1 });
      return { messages: rows.slice(0, limit).map(messageToProto), hasMore: rows.length > limit };
    },

    async sendMessage(req, ctx) {
      // The submitter checks membership, text and client_msg_id, as on the realtime path.
      const result = await deps.submitter.submit(caller(ctx), {
        clientMsgId: req.clientMsgId,
        channelId: req.channelId,
        text: req.text,
      });
      return { messageId: result.messageId, duplicate: result.duplicate };
    },

    async syncInbox(req, ctx) {
      const me = caller(ctx).userId;
      const limit = v.limit(req.limit, 200, 1000);
      const [rows, head] = await Promise.all([
        deps.inbox.readAfter(me, req.afterInboxSeq, limit + 1),
        deps.inbox.head(me),
      ]);
      return {
        entries: rows.slice(0, limit).map(inboxEntryToProto),
        headInboxSeq: head,
        hasMore: rows.length > limit,
        expiredThrough: expiredThrough(req.afterInboxSeq, rows),
      };
    },

    async markRead(req, ctx) {
      const me = caller(ctx).userId;
      const { channel, member } = await requireMember(deps, v.id("channel_id", req.channelId), me);
      // The store stops it at the newest message, as for the realtime ReadReceipt.
      const readSeq = await deps.channels.advanceReadSeq(channel.channelId, me, req.seq);
      if (readSeq > member.readSeq) {
        const members = (await deps.channels.listMembers(channel.channelId)).map((m) => m.userId);
        const frame = create(ServerFrameSchema, {
          kind: { case: "receipt", value: create(ReceiptEventSchema, { channelId: channel.channelId, userId: me, seq: readSeq }) },
        });
        await deps.sessions.pushToUsers(members, frame).catch((e: unknown) => deps.logger?.warn({ err: e }, "receipt push failed"));
      }
      return { readSeq };
    },
  };
}
