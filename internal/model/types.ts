/**
 * The domain's own types. Generated protobuf types stay at the edges (api,
 * gateway, chatserver frames); storage adapters and the pipeline speak these.
 * Ids are snowflakes as bigint; times are epoch milliseconds.
 */
export type Id = bigint;

export const MAX_TEXT_CODE_POINTS = 100_000; // a text must have fewer than this

/**
 * An upper bound of a text's UTF-8 size without encoding it: a UTF-16 unit
 * is at most 3 bytes (a surrogate pair, 2 units, is 4). For sizing frames.
 */
export const utf8BytesAtMost = (text: string): number => text.length * 3;

/** `text` cut to at most `maxBytes` of UTF-8, between characters, with `mark` (counted) after a cut. */
export function cutToUtf8Bytes(text: string, maxBytes: number, mark = ""): string {
  if (utf8BytesAtMost(text) <= maxBytes) return text;
  const bytes = Buffer.from(text);
  if (bytes.byteLength <= maxBytes) return text;
  let end = maxBytes - Buffer.byteLength(mark);
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end).toString("utf8") + mark;
}
export const MAX_GROUP_MEMBERS = 100;
export const MAX_CLIENT_MSG_ID_LENGTH = 64;
/** A reaction's emoji: one grapheme cluster of at most this many UTF-16 units (a family, a flag with tags). */
export const MAX_REACTION_UNITS = 32;

/**
 * Who may see a user's presence: friends and the members of their channels
 * (the default), friends only, or nobody.
 */
export type PresenceVisibility = "chats" | "friends" | "nobody";
export const DEFAULT_PRESENCE_VISIBILITY: PresenceVisibility = "chats";

export interface UserRecord {
  userId: Id;
  /** As typed at sign-up; uniqueness is on the lower-cased form. */
  username: string;
  displayName: string;
  passwordHash: string;
  createdAtMs: number;
}

export type Platform = "unspecified" | "web" | "ios" | "android" | "desktop" | "cli";

export interface DeviceRecord {
  userId: Id;
  deviceId: Id;
  name: string;
  platform: Platform;
  createdAtMs: number;
  lastSeenAtMs: number;
  /** Revoked devices keep their row (for audit) but can no longer refresh. */
  revoked: boolean;
}

export interface RefreshTokenRecord {
  userId: Id;
  deviceId: Id;
  expiresAtMs: number;
}

export type ChannelKind = "direct" | "group";
export type MemberRole = "member" | "admin" | "owner";

export interface ChannelRecord {
  channelId: Id;
  kind: ChannelKind;
  title: string;
  createdAtMs: number;
  createdBy: Id;
}

/**
 * Where a channel sits in one user's list, by their own choice: pinned at
 * the top (since when), or archived (since when; a later message brings it
 * back unless the user muted it). At most one of the two is set.
 */
export interface ChannelPlace {
  pinnedAtMs?: number;
  archivedAtMs?: number;
  /** When the user marked the channel unread (MarkUnread), while it is. */
  markedUnreadAtMs?: number;
}

/**
 * What a change of a place writes: a time sets that setting, null clears it,
 * and a setting left out stays as it is. Only the settings named are written,
 * so two devices changing different settings at once both keep their change.
 */
export type PlaceChange = { [K in keyof ChannelPlace]?: number | null };

/** The change that takes every setting away (the user left the channel). */
export const NO_PLACE: Readonly<Required<PlaceChange>> = { pinnedAtMs: null, archivedAtMs: null, markedUnreadAtMs: null };

/** Channels a user may pin at once. */
export const MAX_PINNED_CHANNELS = 5;

export interface MemberRecord {
  channelId: Id;
  userId: Id;
  role: MemberRole;
  joinedAtMs: number;
  /** Seq of the last message this member has read: moved by their receipts only (what others are shown as seen). */
  readSeq: bigint;
  /**
   * Set for a member added to a group that had messages: the newest seq when
   * they joined. What came before was never theirs to catch up on, so it is
   * not unread for them, but they have not read it either: it is not told to
   * others as their read position (readSeq).
   */
  joinedSeq?: bigint;
  /** Set once the member cleared the channel's history for themselves: the seq it is cleared through. */
  clearedSeq?: bigint;
}

export interface NewMessage {
  messageId: Id;
  channelId: Id;
  senderUserId: Id;
  senderDeviceId: Id;
  clientMsgId: string;
  text: string;
  sentAtMs: number;
  /**
   * Set (non-zero) on a change to an earlier message rather than a message:
   * the seq of the message it changes. An edit carries the new text; with
   * `deleted` it is a delete, with `reaction` a reaction. A change takes no seq of its own (0n once
   * stored) and only travels to inboxes; the MessageLog applies it to its
   * target (`amend`).
   */
  targetSeq?: bigint;
  /** On a message: deleted for everyone, text empty. On a change: the change is a delete. */
  deleted?: boolean;
  /** On a message: when its text was last edited; absent if never. */
  editedAtMs?: number;
  /** On a reply: the seq of the earlier message of the channel it answers. */
  replyToSeq?: bigint;
  /**
   * On a change: the change is its sender's reaction to the target, `text`
   * the emoji, or "" when the sender takes their reaction back.
   */
  reaction?: boolean;
  /**
   * On a message read from the log (`get`, `page`): its reactions, one per
   * user, by user id; absent when none, and on a deleted message.
   */
  reactions?: Reaction[];
  /**
   * On a note the api wrote about the channel itself (a member added,
   * removed or gone, a new title or role): what happened. Text is empty; the
   * sender is who did it; nothing can change or answer a note, and it is
   * never pushed.
   */
  note?: ChannelNote;
}

/**
 * A group's creation has no note: the group appearing with its title and
 * members tells it. `unknown` is a note this build cannot read (one a later
 * build wrote): it still travels and shows ("changed the group"), never
 * stopping a reader.
 */
export type ChannelNoteKind = "members_added" | "member_removed" | "member_left" | "title_changed" | "role_changed" | "joined_by_invite" | "unknown";

export interface ChannelNote {
  kind: ChannelNoteKind;
  /** The members it is about: those added or removed, the new owner when the owner left, whose role changed. */
  userIds: Id[];
  /** The group's new title, on `title_changed`. */
  title?: string;
  /** The new role, on `role_changed`. */
  role?: MemberRole;
}

/** One user's reaction to a message. */
export interface Reaction {
  userId: Id;
  emoji: string;
}

export interface StoredMessage extends NewMessage {
  /** Gap-free position in the channel, from 1; 0n for a change (targetSeq set). */
  seq: bigint;
}

/** Whether a message record is a change to an earlier message (an edit, a delete or a reaction). */
export const isChange = (m: NewMessage): boolean => m.targetSeq !== undefined && m.targetSeq !== 0n;

export interface InboxEntry {
  inboxSeq: bigint;
  message: StoredMessage;
}

export type FriendState = "none" | "request_sent" | "request_received" | "friends";

/**
 * The largest id or seq there can be: the stores keep them in signed 64-bit
 * columns, so a larger uint64 from the wire names nothing.
 */
export const MAX_ID = (1n << 63n) - 1n;

/** A seq that bounds a read or a scan, capped at MAX_ID: past it there is nothing, so the answer is MAX_ID's. */
export const atMostMaxId = (seq: bigint): bigint => (seq > MAX_ID ? MAX_ID : seq);
