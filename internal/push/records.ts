import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { NotificationRequestedSchema } from "../../gen/es/chat/internal/v1/pipeline_pb.js";
import type { AccountStore } from "../accounts/store.js";
import type { ChannelStore } from "../channels/store.js";
import type { Id, InboxEntry, StoredMessage } from "../model/types.js";
import { messageFromProto, messageToProto } from "../wire/messages.js";
import { Topics } from "../pipeline/topics.js";
import type { MessageQueue } from "../queue/port.js";

/** A new message for a user with no device online (the NotificationRequested record). */
export interface NotificationRequest {
  userId: Id;
  message: StoredMessage;
  senderName: string;
  /** Empty for direct chats. */
  channelTitle: string;
}

export function encodeNotificationRequested(n: NotificationRequest): Uint8Array {
  return toBinary(
    NotificationRequestedSchema,
    create(NotificationRequestedSchema, {
      userId: n.userId,
      message: messageToProto(n.message),
      senderName: n.senderName,
      channelTitle: n.channelTitle,
    }),
  );
}

export function decodeNotificationRequested(bytes: Uint8Array): NotificationRequest {
  const r = fromBinary(NotificationRequestedSchema, bytes);
  if (!r.message) throw new Error("NotificationRequested without a message");
  return { userId: r.userId, message: messageFromProto(r.message), senderName: r.senderName, channelTitle: r.channelTitle };
}

/**
 * The InboxWriter's onOffline hook: publishes NotificationRequested (keyed
 * by user id) to the notifications topic, with the sender's display name and
 * the channel title looked up once here, so the notifier needs no store but
 * the push endpoints. A user's own messages are never notified.
 */
export function publishOfflineNotifications(deps: {
  queue: MessageQueue;
  accounts: AccountStore;
  channels: ChannelStore;
}): (userId: Id, entry: InboxEntry) => Promise<void> {
  return async (userId, entry) => {
    const m = entry.message;
    if (m.senderUserId === userId) return;
    const [sender, channel] = await Promise.all([deps.accounts.getUser(m.senderUserId), deps.channels.getChannel(m.channelId)]);
    const request: NotificationRequest = {
      userId,
      message: m,
      senderName: sender?.displayName ?? "Someone",
      channelTitle: channel?.kind === "group" ? channel.title : "",
    };
    await deps.queue.publish(Topics.notifications, [{ key: String(userId), value: encodeNotificationRequested(request) }]);
  };
}

/** The Notifier's channelMutedUntil, read from the ChannelStore (one partition of the user). */
export function channelMutes(channels: Pick<ChannelStore, "listMutes">): (userId: Id, channelId: Id) => Promise<number | undefined> {
  return async (userId, channelId) => (await channels.listMutes(userId)).get(channelId);
}
