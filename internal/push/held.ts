import type { Id, StoredMessage } from "../model/types.js";
import { buildNotification, preview, PREVIEW_CODE_POINTS, type NotificationVersions } from "./notification-content.js";
import type { NotificationRequest } from "./records.js";

/**
 * The batches a notification's records came in (BatchContext.lost of each).
 * Once one is lost, the partition's next owner reads the records again and
 * notifies the chat itself: sent from here too, the push would come twice.
 */
export class Origin {
  /** A push of it was delivered (to some device): its records are notified, also when read here again. */
  sent = false;
  /** The partitions its records came from (none where the queue never moves one, or accept() was called alone). */
  readonly partitions = new Set<number>();
  constructor(readonly batches: AbortSignal[]) {}
  get reassigned(): boolean {
    return this.batches.some((b) => b.aborted);
  }
}

/**
 * What one (user, chat) window collapsed, shared by its fan-out and the jobs
 * it makes: a withdrawal (a delete, a reaction taken back) takes a message
 * out, and they send what is left, its count and newest message, or nothing.
 */
export class Held {
  /** By message id, so a record the queue delivers again is not counted twice; a long text kept as its preview. */
  readonly requests = new Map<Id, NotificationRequest>();
  /** The newest request, mentioned when any is (a mention reaches through a mute). */
  latest: NotificationRequest;
  /** By message id, the id of the last edit given to it. */
  private readonly edits = new Map<Id, Id>();
  /** Changed by each request taken in, out or edited: a job made before rebuilds its notification. */
  version = 0;
  /** The open window or its fan-out (one), and each job not done with: at 0 it is out of HeldByChat. */
  refs = 1;
  private built?: { version: number; versions: NotificationVersions };
  /** What took out its last request, as a skip counts it when it finds nothing left. */
  emptiedBy: "deleted" | "read" = "deleted";

  constructor(
    readonly key: string,
    first: NotificationRequest,
    readonly origin: Origin,
  ) {
    this.latest = first;
    this.add(first);
  }

  add(req: NotificationRequest): void {
    const m = req.message;
    // Only the preview is shown: a window of long texts held whole was up to 99,999 characters each.
    if (!m.reaction && m.text.length > 4 * PREVIEW_CODE_POINTS) req = { ...req, message: { ...m, text: preview(m.text) } };
    this.requests.set(m.messageId, req);
    const mentioned = this.latest.mentioned || req.mentioned;
    if (isNewer(req, this.latest)) this.latest = req;
    if (mentioned) this.latest = { ...this.latest, mentioned: true };
    this.version++;
  }

  /** Takes out the requests `out` names (what a change withdraws, what a read mark covers); the message ids taken out. */
  takeOut(out: (req: NotificationRequest) => boolean, by: "deleted" | "read"): Id[] {
    const gone: Id[] = [];
    for (const [id, req] of this.requests) if (out(req)) gone.push(id);
    if (gone.length === 0) return gone;
    this.emptiedBy = by;
    for (const id of gone) this.requests.delete(id);
    const left = [...this.requests.values()];
    if (left.length > 0) {
      this.latest = left.reduce((a, b) => (isNewer(b, a) ? b : a));
      if (left.some((r) => r.mentioned)) this.latest = { ...this.latest, mentioned: true };
    }
    this.version++;
    return gone;
  }

  /**
   * Gives the message `change` edits its new text, and whether it now names
   * the user (`mentioned`, unless the record did not say), if held; a record
   * that comes again changes nothing.
   */
  edit(change: StoredMessage, mentioned?: boolean): void {
    for (const [id, req] of this.requests) {
      const m = req.message;
      if (m.reaction || m.channelId !== change.channelId || m.seq !== change.targetSeq) continue;
      // An older edit that comes again (a batch published again) after a newer one: edits of one
      // message are ordered by their ids (snowflakes), as the MessageLog applies them.
      const last = this.edits.get(id);
      if (last !== undefined && last >= change.messageId) return;
      this.edits.set(id, change.messageId);
      const edited: NotificationRequest = { ...req, message: { ...m, text: change.text, editedAtMs: change.sentAtMs } };
      if (edited.message.text.length > 4 * PREVIEW_CODE_POINTS) edited.message.text = preview(edited.message.text);
      if (mentioned === true) edited.mentioned = true;
      else if (mentioned === false) delete edited.mentioned;
      // A mention past the preview's end changes the flag alone.
      if (edited.message.text === m.text && edited.mentioned === req.mentioned) return;
      this.requests.set(id, edited);
      // The newest as it now reads, mentioned while any message still names the user.
      const newest = this.latest.message.messageId === id ? edited : this.latest;
      this.latest = { ...newest, mentioned: [...this.requests.values()].some((r) => r.mentioned === true) };
      if (!this.latest.mentioned) delete this.latest.mentioned;
      this.version++;
      return;
    }
  }

  versions(ttlSeconds: number): NotificationVersions {
    if (this.built?.version !== this.version) {
      const count = this.requests.size;
      this.built = { version: this.version, versions: { preview: buildNotification(this.latest, count, false, ttlSeconds), noPreview: buildNotification(this.latest, count, true, ttlSeconds) } };
    }
    return this.built.versions;
  }
}

/**
 * What each (user, chat) holds that a withdrawal can still take out: its
 * open window, and earlier windows still fanning out, queued or retrying.
 * A withdrawal for a chat with none is dropped on this one lookup.
 */
export class HeldByChat {
  private readonly byChat = new Map<string, Set<Held>>();

  /** What the chat ("user:channel") holds. */
  of(key: string): Set<Held> | undefined {
    return this.byChat.get(key);
  }

  add(held: Held): void {
    const ofChat = this.byChat.get(held.key);
    if (ofChat) ofChat.add(held);
    else this.byChat.set(held.key, new Set([held]));
  }

  /** One less use of `held` (its window, or a job); unused, a withdrawal no longer looks at it. */
  release(held: Held): void {
    if (--held.refs > 0) return;
    const ofChat = this.byChat.get(held.key);
    ofChat?.delete(held);
    if (ofChat?.size === 0) this.byChat.delete(held.key);
  }
}

/**
 * Whether `a` is the later of two events of a channel: by seq, which a record
 * that came again or out of order cannot undo; a change (a reaction) has none
 * (seq 0), so against one the times the events were made say it.
 */
function isNewer(a: NotificationRequest, b: NotificationRequest): boolean {
  if (a.message.seq === 0n || b.message.seq === 0n) return a.message.sentAtMs >= b.message.sentAtMs;
  return a.message.seq >= b.message.seq;
}
