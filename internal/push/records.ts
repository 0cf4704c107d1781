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
  /** The text names the user (@username): notified even while the channel is muted. */
  mentioned?: boolean;
}

/**
 * Whether `text` names `username` as `@username`, in any case, not as part of
 * a longer name or an address (`@bobby` and `a@bob.example` do not name bob).
 */
export function mentions(text: string, username: string): boolean {
  if (username === "" || !text.includes("@")) return false;
  const lower = text.toLowerCase();
  const name = `@${username.toLowerCase()}`;
  // Usernames are a-z, 0-9, '_' and '.'; a trailing '.' ends a sentence, not a name.
  // A combining mark changes the letter it follows ("@bob\u0301" reads "@bób"); not an emoji's
  // presentation selector or keycap ("❤️@bob"). Compared by code point: a letter outside the BMP
  // is two UTF-16 units, and its halves matched none of these.
  const nameChar = /^(?![\uFE00-\uFE0F\u20E3\u{E0100}-\u{E01EF}])[\p{L}\p{N}\p{M}_]$/u;
  const at = (j: number) => {
    const cp = lower.codePointAt(j);
    return cp === undefined ? "" : String.fromCodePoint(cp);
  };
  for (let i = lower.indexOf(name); i >= 0; i = lower.indexOf(name, i + 1)) {
    const before = i === 0 ? "" : ([...lower.slice(Math.max(0, i - 2), i)].pop() ?? "");
    const end = i + name.length;
    const after = at(end);
    if (before !== "" && (nameChar.test(before) || before === ".")) continue;
    if (nameChar.test(after) || (after === "." && nameChar.test(at(end + 1)))) continue;
    return true;
  }
  return false;
}

export function encodeNotificationRequested(n: NotificationRequest): Uint8Array {
  return toBinary(
    NotificationRequestedSchema,
    create(NotificationRequestedSchema, {
      userId: n.userId,
      message: messageToProto(n.message),
      senderName: n.senderName,
      channelTitle: n.channelTitle,
      mentioned: n.mentioned ?? false,
    }),
  );
}

export function decodeNotificationRequested(bytes: Uint8Array): NotificationRequest {
  const r = fromBinary(NotificationRequestedSchema, bytes);
  if (!r.message) throw new Error("NotificationRequested without a message");
  const n: NotificationRequest = { userId: r.userId, message: messageFromProto(r.message), senderName: r.senderName, channelTitle: r.channelTitle };
  if (r.mentioned) n.mentioned = true;
  return n;
}

/**
 * The InboxWriter's onOffline hook: publishes NotificationRequested (keyed
 * by user id) to the notifications topic, with the sender's display name and
 * the channel title looked up here, so the notifier needs no store but the
 * push endpoints. A user's own messages are never notified. A text with an
 * '@' in it also costs a read of the user, to tell a mention.
 *
 * A group message reaches the hook once for each offline member, side by
 * side: calls that overlap share one read of the sender and one of the
 * channel (99 members were 198 reads of the same two rows). Nothing is kept
 * once a read is answered, so a rename shows in the next message's push.
 */
export function publishOfflineNotifications(deps: {
  queue: MessageQueue;
  accounts: AccountStore;
  channels: ChannelStore;
}): (userId: Id, entry: InboxEntry) => Promise<void> {
  const readUser = sharedWhileReading((id: Id) => deps.accounts.getUser(id));
  const readChannel = sharedWhileReading((id: Id) => deps.channels.getChannel(id));
  return async (userId, entry) => {
    const m = entry.message;
    if (m.senderUserId === userId) return;
    const [sender, channel, recipient] = await Promise.all([
      readUser(m.senderUserId),
      readChannel(m.channelId),
      m.text.includes("@") ? deps.accounts.getUser(userId) : undefined,
    ]);
    const request: NotificationRequest = {
      userId,
      message: m,
      senderName: sender?.displayName ?? "Someone",
      channelTitle: channel?.kind === "group" ? channel.title : "",
    };
    if (recipient && mentions(m.text, recipient.username)) request.mentioned = true;
    await deps.queue.publish(Topics.notifications, [{ key: String(userId), value: encodeNotificationRequested(request) }]);
  };
}

/** `read`, with the calls for one id that overlap a read under way given that read's answer. */
function sharedWhileReading<T>(read: (id: Id) => Promise<T>): (id: Id) => Promise<T> {
  const reading = new Map<Id, Promise<T>>();
  return (id) => {
    let p = reading.get(id);
    if (!p) {
      p = read(id).finally(() => reading.delete(id));
      reading.set(id, p);
    }
    return p;
  };
}

/** The Notifier's channelMutedUntil, read from the ChannelStore (one partition of the user). */
export function channelMutes(channels: Pick<ChannelStore, "listMutes">): (userId: Id, channelId: Id) => Promise<number | undefined> {
  return async (userId, channelId) => (await channels.listMutes(userId)).get(channelId);
}
