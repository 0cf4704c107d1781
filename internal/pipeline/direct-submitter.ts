import type { BlockCache } from "../accounts/blocks.js";
import { LruMap } from "../cache/lru-map.js";
import { ChannelMembers } from "../channels/members.js";
import type { ChannelStore } from "../channels/store.js";
import { validateSend } from "../chatserver/validate.js";
import type { IdGenerator } from "../ids/snowflake.js";
import { checkNamedMessage, namesMessage, isModerator, notModerator, refusedAfterSenderCheck, storedUnderKey, type ChangeWindows } from "../messages/changes.js";
import type { MessageLog } from "../messages/log.js";
import { SendOrder, type SendTurn } from "../messages/send-order.js";
import { blocksApplyTo, newMessage, noteMessage, type MessageSubmitter, type SendCommand, type Sender, type SubmitResult } from "../messages/submit.js";
import type { MessageWriter } from "../messages/writer.js";
import { ENGINE_RETRY_AFTER_MS } from "../model/engine-errors.js";
import { ChatError } from "../model/errors.js";
import type { ChannelNote, Id, NewMessage } from "../model/types.js";
import { sendKey } from "../sendclaims/port.js";
import { deliverLive, type LiveDeliveryDeps, type LiveEntry } from "./live-delivery.js";

export interface DirectSubmitterDeps extends LiveDeliveryDeps {
  channels: ChannelStore;
  writer: MessageWriter;
  /** Read for the target of an edit or a delete. */
  log: MessageLog;
  ids: IdGenerator;
  now?: () => number;
  /** Blocks between a direct chat's pair; without it they are not checked. */
  blocks?: BlockCache;
  /** How long after sending a sender may edit or delete a message; no limit without it. */
  changeWindows?: ChangeWindows;
}

/**
 * The pipeline in one step, for one process on embedded engines: a send is
 * stored in the channel's log and in every member's inbox by one write, then
 * acked, then handed to the live sessions. The queue between the Sequencer
 * and the InboxWriter exists so that many processes can each own some
 * channels and some users; with one process owning all of them it only added
 * two queue writes, two reads and two encodings per message (the benchmark's
 * profile: a third of chatd's CPU per message). The guarantees are the same:
 * acked means stored everywhere it must be, each channel and each inbox has
 * one writer (this process, one transaction at a time), and a resend of a
 * stored send gets the stored message id back.
 */
export class DirectSubmitter implements MessageSubmitter {
  private readonly members: ChannelMembers;
  /** A device's sends to a channel are written in the order it sent them (a reply's check reads more than a plain send's). */
  private readonly order = new SendOrder();

  /**
   * Edits and reactions being checked or written, by channel and user. One
   * that changes nothing as read is copied to no inbox only when none of the
   * same user's was in flight as it began: that read then saw every change
   * of theirs acked before (or sent before it by the same device), and the
   * change's answer cannot overtake one of them.
   */
  private readonly changing = new Map<string, number>();
  /**
   * The answers given to edits that changed nothing (stored nowhere), by
   * send key: a resend gets the same answer, even after a later edit made it
   * one that would change something (the device sent it before that one).
   */
  private readonly unchangedEdits = new LruMap<string, Id>(10_000);

  /** The inbox entries of each message written since the last delivery tick, delivered in the next. */
  private live: (readonly LiveEntry[])[] = [];

  private readonly deliverWritten = (): void => {
    const written = this.live;
    this.live = [];
    for (const entries of written) deliverLive(this.deps, entries).catch(this.notifyFailed);
  };

  private readonly notifyFailed = (err: unknown): void => {
    // One process: the notification's publish fails only with the queue's file.
    this.deps.metrics?.engineErrors.inc({ op: "notify" });
    this.deps.logger?.error({ err }, "push notification not queued");
  };

  constructor(private readonly deps: DirectSubmitterDeps) {
    this.members = new ChannelMembers(deps.channels, undefined, deps.blocks);
  }

  async submit(sender: Sender, cmd: SendCommand): Promise<SubmitResult> {
    cmd = validateSend(cmd);
    const { ids } = this.deps;
    // Only an edit can have been answered from memory: a plain send builds no key here (its hot path).
    const key = cmd.editSeq ? sendKey(sender.userId, sender.deviceId, cmd.channelId, cmd.clientMsgId) : undefined;
    const answered = key === undefined ? undefined : this.unchangedEdits.peek(key);
    if (answered !== undefined) return { messageId: answered, duplicate: true };
    const changer = cmd.editSeq || cmd.reactSeq ? `${cmd.channelId}/${sender.userId}` : undefined;
    const quiet = changer === undefined || !this.changing.has(changer);
    if (changer !== undefined) this.changing.set(changer, (this.changing.get(changer) ?? 0) + 1);
    // The send's place in its device's line, taken before its first await: a send that reaches its
    // write without one (below) takes none unless a send of the line is still out, as nothing can
    // come between (a key, a turn and a map entry each, on nearly every send).
    let turn: SendTurn | undefined;
    try {
      // A plain send to a direct chat whose pair and blocks are known waits for nothing before its
      // write: each await of a promise already settled still cost a turn of the microtask queue.
      let memberIds = this.members.knownMemberIds(cmd.channelId);
      if (memberIds === undefined) {
        turn = this.order.take(sender, cmd.channelId);
        memberIds = await this.members.memberIds(cmd.channelId);
      }
      let unchanged = false;
      const found: { byModerator?: boolean } = {};
      /** Whether the send waited for something since the roster was read. */
      let stale = false;
      try {
        if (!memberIds.includes(sender.userId)) throw new ChatError("not_a_member", "not a member of this channel");
        const blocked = blocksApplyTo(cmd) && !this.members.knownUnblocked(cmd.channelId, sender.userId);
        const named = namesMessage(cmd);
        if (blocked || named) {
          turn ??= this.order.take(sender, cmd.channelId);
          stale = true;
          const refusing = blocked ? this.members.refuseIfBlocked(cmd.channelId, sender.userId) : undefined;
          [, unchanged = false] = await Promise.all([
            refusing,
            named
              ? refusedAfterSenderCheck(refusing, checkNamedMessage(this.deps.log, this.deps.channels, sender, cmd, this.deps.changeWindows, (this.deps.now ?? Date.now)(), found))
              : undefined,
          ]);
        }
      } catch (err) {
        const stored = err instanceof ChatError ? await storedUnderKey(this.deps.log, sender, cmd).catch(() => undefined) : undefined;
        if (stored === undefined) throw err;
        return { messageId: stored, duplicate: true };
      }
      if (unchanged && quiet && key !== undefined) return await this.unchangedEdit(key, sender, cmd);
      if (turn === undefined && !this.order.clear(sender, cmd.channelId)) turn = this.order.take(sender, cmd.channelId);
      if (turn?.waiting) {
        stale = true;
        await turn.ready;
      }
      // A resend that raced its first copy (another session of the device) comes after it in the line:
      // that copy, an edit to the text the message has, was answered and stored nowhere, so the
      // writer's key would not catch this one, which then stored the edit under an id of its own.
      const answeredAhead = key === undefined ? undefined : this.unchangedEdits.peek(key);
      if (answeredAhead !== undefined) return { messageId: answeredAhead, duplicate: true };
      // A group's roster read before a wait may be stale: a member added meanwhile, whose join note
      // then took a seq before this send's, missed it in the middle of their membership (the inbox is
      // the sync queue: no sync fills that in), and one removed got it after their removal. Read
      // again, with no wait between it and the write, it is the roster as of the send's seq.
      // So is an admin's role, for a delete it alone allowed: one demoted meanwhile deleted as a plain member.
      if (stale && this.members.knownMemberIds(cmd.channelId) === undefined) {
        let moderating: boolean | undefined;
        [memberIds, moderating] = await Promise.all([
          this.members.memberIds(cmd.channelId),
          found.byModerator ? isModerator(this.deps.channels, cmd.channelId, sender.userId) : undefined,
        ]);
        const refusal = !memberIds.includes(sender.userId)
          ? new ChatError("not_a_member", "not a member of this channel")
          : moderating === false ? notModerator() : undefined;
        if (refusal) {
          const stored = await storedUnderKey(this.deps.log, sender, cmd).catch(() => undefined);
          if (stored === undefined) throw refusal;
          return { messageId: stored, duplicate: true };
        }
      }
      // The writer takes the write into its transaction as it is called: the turn can pass on at once.
      // A reaction that changes nothing is still stored, for its key (a resend after a restart, or
      // after the user's next reaction, is then this one again), but copied to no inbox.
      const writing = this.write(newMessage(ids.next(), sender, cmd, (this.deps.now ?? Date.now)()), unchanged && quiet ? [] : memberIds);
      turn?.done();
      return await writing;
    } finally {
      turn?.done();
      if (changer !== undefined) {
        const left = this.changing.get(changer)! - 1;
        if (left === 0) this.changing.delete(changer);
        else this.changing.set(changer, left);
      }
    }
  }

  /**
   * The answer to an edit to the text the message has: acked as any edit,
   * with an id of its own that no entry carries, and nothing written (stored,
   * it would mark the message edited and count towards its edits). The very
   * edit stored before under this key (the resend of the edit that set this
   * text) keeps its id.
   */
  private async unchangedEdit(key: string, sender: Sender, cmd: SendCommand): Promise<SubmitResult> {
    const stored = await storedUnderKey(this.deps.log, sender, cmd);
    if (stored !== undefined) return { messageId: stored, duplicate: true };
    const messageId = this.deps.ids.next();
    this.unchangedEdits.set(key, messageId);
    return { messageId, duplicate: false };
  }

  async note(sender: Sender, channelId: Id, note: ChannelNote): Promise<SubmitResult> {
    const memberIds = await this.members.memberIds(channelId);
    return this.write(noteMessage(this.deps.ids.next(), sender, channelId, note, (this.deps.now ?? Date.now)()), memberIds);
  }

  private async write(m: NewMessage, memberIds: readonly Id[]): Promise<SubmitResult> {
    const { writer, metrics } = this.deps;
    let written;
    try {
      written = await writer.write(m, memberIds);
    } catch (err) {
      if (err instanceof ChatError) throw err;
      this.deps.logger?.warn({ err }, "message write failed");
      // The store's write failed (SQLite's file locked or failing): retried as any engine outage.
      throw new ChatError("unavailable", "the message was not accepted; send it again", ENGINE_RETRY_AFTER_MS);
    }
    if (written.duplicate) return { messageId: written.message.messageId, duplicate: true };
    // A reaction that changed nothing: stored for its key, for no one's inbox.
    if (written.entries.length === 0) return { messageId: written.message.messageId, duplicate: false };
    metrics?.sequenced.inc();
    metrics?.inboxAppends.inc(written.entries.length);
    // After the ack (which the caller sends when this resolves), as on the queue's path: the
    // messages of one commit all together, once the commit's continuations (the acks among them)
    // have run. A tick, not an immediate: one queued from the commit's own immediate waited for
    // the next turn's poll phase, every socket's input of that turn read first.
    if (this.live.push(written.entries) === 1) process.nextTick(this.deliverWritten);
    return { messageId: written.message.messageId, duplicate: false };
  }
}
