import { create } from "@bufbuild/protobuf";
import type { Logger } from "pino";
import { ServerFrameSchema, type ServerFrame } from "../../gen/es/chat/v1/session_pb.js";
import type { SessionDirectory } from "../delivery/port.js";
import { InboxEntrySchema, type Message } from "../../gen/es/chat/v1/types_pb.js";
import { isChange, type Id, type InboxEntry, type StoredMessage } from "../model/types.js";
import { messageToProto } from "../wire/messages.js";
import type { PipelineMetrics } from "./metrics.js";

export interface LiveDeliveryDeps {
  sessions: SessionDirectory;
  /**
   * Called for entries of users with no session online: those to push, and
   * those that change a push the notifier may hold (an edit, a delete, a
   * reaction taken back, marked `notify`), after the user's earlier ones.
   */
  onOffline?: (userId: Id, entry: InboxEntry) => Promise<void>;
  logger?: Logger;
  metrics?: PipelineMetrics;
}

/**
 * A stored inbox entry and its user; `notify` on a change the notifier hears of for an offline
 * user: a reaction, pushed to its author, or one taken back, withdrawn from the author's pushes.
 */
export interface LiveEntry {
  userId: Id;
  entry: InboxEntry;
  notify?: boolean;
}

/**
 * Hands stored inbox entries to their users' live sessions, and those of
 * users with no session to `onOffline`: messages (not notes), changes
 * marked `notify`, edits and deletes (the message's push may still be
 * collapsing or waiting to retry). An entry may come again (a redelivered batch): a session
 * drops an inbox seq it already sent.
 *
 * The live push is best effort and never throws: the entries are stored, and
 * a session that misses one catches up from its cursor. The notifications are
 * not: nothing else would send them, so a failed one rejects (the caller's
 * batch comes again, and the notifier collapses a repeat). When the lookup of
 * who is online fails (Redis away), every recipient is taken as offline: a
 * notification too many beats one missing.
 */
export function deliverLive(deps: LiveDeliveryDeps, fresh: readonly LiveEntry[]): Promise<void> {
  if (fresh.length === 0) return DONE;
  const { sessions } = deps;
  if (sessions.pushEntries === undefined) return deliverRemote(deps, fresh);
  // A directory in this process takes the entries at once: the common case, everyone reached, then
  // costs no promise nor async function's frame (this runs for every message).
  let missed: ReadonlySet<Id> | undefined;
  try {
    missed = sessions.pushEntries(fresh);
    observeLatency(deps, fresh);
  } catch (err) {
    pushFailed(deps, err);
  }
  if (missed !== undefined && missed.size === 0) return DONE;
  if (!deps.onOffline) return DONE;
  const online = missed && new Set(fresh.map((f) => f.userId).filter((u) => !missed.has(u)));
  return notifyOffline(deps, deps.onOffline, fresh, online);
}

const DONE = Promise.resolve();

async function deliverRemote(deps: LiveDeliveryDeps, fresh: readonly LiveEntry[]): Promise<void> {
  const online = await pushToSessions(deps, fresh);
  if (online !== undefined && allReached(fresh, online)) return;
  if (deps.onOffline) await notifyOffline(deps, deps.onOffline, fresh, online);
}

/** Pushes to the users' sessions; resolves with who was online, or undefined when the push did not tell. */
async function pushToSessions(deps: LiveDeliveryDeps, fresh: readonly LiveEntry[]): Promise<ReadonlySet<Id> | undefined> {
  try {
    const { sessions } = deps;
    const items = entryFrames(fresh);
    let online: ReadonlySet<Id> | undefined;
    if (sessions.pushMany) online = await sessions.pushMany(items);
    else for (const i of items) await sessions.pushToUsers([i.userId], i.frame);
    observeLatency(deps, fresh);
    return online;
  } catch (err) {
    pushFailed(deps, err);
    // pushMany fails only when it could not look up who is online (Redis away):
    // asking again would be the same lookup, a second wait on the same outage
    // for every batch. Nobody was reached, so everyone is notified.
    return deps.sessions.pushMany ? NOBODY : undefined;
  }
}

const NOBODY: ReadonlySet<Id> = new Set();

function observeLatency(deps: LiveDeliveryDeps, fresh: readonly LiveEntry[]): void {
  const now = Date.now();
  for (const { entry } of fresh) deps.metrics?.deliveryLatency.observe(Math.max(0, now - entry.message.sentAtMs) / 1000);
}

function pushFailed(deps: LiveDeliveryDeps, err: unknown): void {
  deps.metrics?.engineErrors.inc({ op: "deliver" });
  deps.logger?.warn({ err }, "live delivery failed; sessions will catch up from their cursors");
}

/** Each entry's delivery frame. The members' entries of one message share its Message, which the codec then encodes once. */
function entryFrames(fresh: readonly LiveEntry[]): { userId: Id; frame: ServerFrame }[] {
  // They come together, so the last one is the one to reuse.
  let stored: StoredMessage | undefined;
  let message: Message | undefined;
  return fresh.map(({ userId, entry }) => {
    if (entry.message !== stored) message = messageToProto((stored = entry.message));
    const pb = create(InboxEntrySchema, { inboxSeq: entry.inboxSeq, message });
    return { userId, frame: create(ServerFrameSchema, { kind: { case: "message", value: { entry: pb } } }) };
  });
}

async function notifyOffline(
  deps: LiveDeliveryDeps,
  onOffline: NonNullable<LiveDeliveryDeps["onOffline"]>,
  fresh: readonly LiveEntry[],
  online: ReadonlySet<Id> | undefined,
): Promise<void> {
  // An edit or a delete is no news to push (the device learns it at its next sync), but the notifier
  // may still hold the message's push, which it then sends with the new text, or drops.
  const news = fresh.filter((f) => f.notify || (isChange(f.entry.message) ? f.entry.message.reaction !== true : !f.entry.message.note));
  if (news.length === 0) return;
  // The push's own lookup says who is online (in the distributed mode one Redis round trip, not two).
  const reached = online ?? (await whoIsOnline(deps, [...new Set(news.map((f) => f.userId))]));
  // Side by side: on Kafka each publish is a round trip, and a group message has many offline members.
  await Promise.all(news.filter((f) => !reached.has(f.userId)).map((f) => onOffline(f.userId, f.entry)));
}

function allReached(fresh: readonly LiveEntry[], online: ReadonlySet<Id>): boolean {
  for (const f of fresh) if (!online.has(f.userId)) return false;
  return true;
}

async function whoIsOnline(deps: LiveDeliveryDeps, userIds: Id[]): Promise<ReadonlySet<Id>> {
  try {
    return await deps.sessions.onlineUsers(userIds);
  } catch (err) {
    deps.metrics?.engineErrors.inc({ op: "online_users" });
    deps.logger?.warn({ err }, "cannot tell who is online; notifying every recipient");
    return new Set();
  }
}
