import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { NotificationRequestedSchema, type NotificationRequested } from "../../gen/es/chat/internal/v1/pipeline_pb.js";
import type { AccountStore } from "../accounts/store.js";
import type { ChannelStore } from "../channels/store.js";
import { isChange, type Id, type InboxEntry, type StoredMessage } from "../model/types.js";
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

/**
 * A change that takes back what `userId` may still be notified of (the
 * NotificationRequested record with `withdrawal` set): a delete, whose
 * message's push (and those of reactions to it) is dropped, or a reaction
 * taken back, whose push of that reactor's reaction is.
 */
export interface NotificationWithdrawal {
  userId: Id;
  withdrawal: StoredMessage;
}

/** Whether the change withdraws a push the notifier may hold: a delete, or a reaction taken back. */
export function isWithdrawal(m: StoredMessage): boolean {
  return isChange(m) && (m.deleted === true || (m.reaction === true && m.text === ""));
}

/**
 * An edit of a message `userId` may still be notified of (the
 * NotificationRequested record with `edit` set): a push of it the notifier
 * still holds goes with the new text.
 */
export interface NotificationEdit {
  userId: Id;
  edit: StoredMessage;
  /** Whether the new text names the user; unset when the record does not say (a pipeline built before it). */
  mentioned?: boolean;
}

/** Whether the change is an edit (of a message's text). */
export function isEdit(m: StoredMessage): boolean {
  return isChange(m) && m.deleted !== true && m.reaction !== true;
}

/** A withdrawal or an edit record: the change itself, in place of a message. */
export function encodeNotificationChange(c: NotificationWithdrawal | NotificationEdit): Uint8Array {
  const change = "withdrawal" in c ? { withdrawal: messageToProto(c.withdrawal) } : { edit: messageToProto(c.edit), editMentioned: c.mentioned };
  return toBinary(NotificationRequestedSchema, create(NotificationRequestedSchema, { userId: c.userId, ...change }));
}

/**
 * The user read a chat up to `seq` (the NotificationRequested record with
 * `read` set): what the notifier holds of it up to there is not pushed.
 */
export interface NotificationReadMark {
  userId: Id;
  read: { channelId: Id; seq: bigint };
}

export function encodeNotificationRead(r: NotificationReadMark): Uint8Array {
  return toBinary(NotificationRequestedSchema, create(NotificationRequestedSchema, { userId: r.userId, read: { channelId: r.read.channelId, seq: r.read.seq } }));
}

/**
 * Publishes a user's read mark that moved (a read receipt, MarkRead) on the
 * user's key of the notifications topic: one record per move, never per
 * message. A held push of a message read on another device, or read just
 * before the user went offline, is then not sent.
 */
export function publishReadMarks(queue: Pick<MessageQueue, "publish">): (userId: Id, channelId: Id, seq: bigint) => Promise<void> {
  return (userId, channelId, seq) =>
    queue.publish(Topics.notifications, [{ key: String(userId), value: encodeNotificationRead({ userId, read: { channelId, seq } }) }]);
}

/** A record of the notifications topic: a request, a withdrawal, an edit or a read mark. */
export function decodeNotificationRecord(bytes: Uint8Array): NotificationRequest | NotificationWithdrawal | NotificationEdit | NotificationReadMark {
  const r = fromBinary(NotificationRequestedSchema, bytes);
  if (r.read) return { userId: r.userId, read: { channelId: r.read.channelId, seq: r.read.seq } };
  if (r.withdrawal) return { userId: r.userId, withdrawal: messageFromProto(r.withdrawal) };
  if (r.edit) {
    const e: NotificationEdit = { userId: r.userId, edit: messageFromProto(r.edit) };
    if (r.editMentioned !== undefined) e.mentioned = r.editMentioned;
    return e;
  }
  return requestOf(r);
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
  return requestOf(fromBinary(NotificationRequestedSchema, bytes));
}

function requestOf(r: NotificationRequested): NotificationRequest {
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
 *
 * A delete, or a reaction taken back, is published as a withdrawal (no
 * read), after the user's notifications still being published: those wait
 * for their reads, and one of the withdrawn message, published after its
 * withdrawal, would be pushed all the same. So is an edit, as an edit
 * record: published before the message's own request, it would find
 * nothing held and the push would go with the old text. An edit tells
 * whether its new text names the user (a read of the user for a text with
 * an '@', as a message's), so an edit that drops or adds the mention
 * changes whether the held push reaches through a mute.
 */
export function publishOfflineNotifications(deps: {
  queue: MessageQueue;
  accounts: AccountStore;
  channels: ChannelStore;
}): (userId: Id, entry: InboxEntry) => Promise<void> {
  const readUser = sharedWhileReading((id: Id) => deps.accounts.getUser(id));
  const readChannel = sharedWhileReading((id: Id) => deps.channels.getChannel(id));
  /** Each user's notifications being published (only while some are). */
  const publishing = new Map<Id, Set<Promise<void>>>();
  const publish = (userId: Id, value: Uint8Array) => deps.queue.publish(Topics.notifications, [{ key: String(userId), value }]);
  const afterPending = async (userId: Id, record: () => Uint8Array | Promise<Uint8Array>) => {
    const before = publishing.get(userId);
    if (before) await Promise.allSettled(before);
    await publish(userId, await record());
  };
  // Whether the held push is a mention follows the edited text: one that drops the @name must not
  // reach through a mute, one that adds it must. A read of the user only for a text with an '@'.
  const editRecord = async (userId: Id, m: StoredMessage) => {
    const recipient = m.text.includes("@") ? await deps.accounts.getUser(userId) : undefined;
    return encodeNotificationChange({ userId, edit: m, mentioned: recipient !== undefined && mentions(m.text, recipient.username) });
  };
  const notify = async (userId: Id, m: StoredMessage) => {
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
    await publish(userId, encodeNotificationRequested(request));
  };
  return (userId, entry) => {
    const m = entry.message;
    if (isWithdrawal(m)) return afterPending(userId, () => encodeNotificationChange({ userId, withdrawal: m }));
    // An edit's sender is the message's author, whose own message is never pushed to them.
    if (m.senderUserId === userId) return DONE;
    if (isEdit(m)) return afterPending(userId, () => editRecord(userId, m));
    // Registered before its first await: a withdrawal handed on after it must find it.
    const p = notify(userId, m);
    let mine = publishing.get(userId);
    if (!mine) publishing.set(userId, (mine = new Set()));
    mine.add(p);
    const forget = () => {
      mine.delete(p);
      if (mine.size === 0 && publishing.get(userId) === mine) publishing.delete(userId);
    };
    p.then(forget, forget);
    return p;
  };
}

const DONE = Promise.resolve();

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
