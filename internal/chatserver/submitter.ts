import type { Counter } from "prom-client";
import type { BlockCache } from "../accounts/blocks.js";
import { LruMap } from "../cache/lru-map.js";
import { ChannelMembers } from "../channels/members.js";
import type { ChannelStore } from "../channels/store.js";
import type { IdGenerator } from "../ids/snowflake.js";
import { checkNamedMessage, isModerator, namesMessage, notModerator, refusedAfterSenderCheck, storedUnderKey, type ChangeWindows } from "../messages/changes.js";
import { SendOrder } from "../messages/send-order.js";
import type { MessageLog } from "../messages/log.js";
import { blocksApplyTo, newMessage, noteMessage, type MessageSubmitter, type SendCommand, type Sender, type SubmitResult } from "../messages/submit.js";
import { ENGINE_RETRY_AFTER_MS } from "../model/engine-errors.js";
import { ChatError } from "../model/errors.js";
import type { ChannelNote, Id } from "../model/types.js";
import { encodeSubmitted } from "../pipeline/records.js";
import { Topics } from "../pipeline/topics.js";
import type { MessageQueue } from "../queue/port.js";
import { sendKey, type SendClaims } from "../sendclaims/port.js";
import { validateSend } from "./validate.js";

export interface QueueSubmitterDeps {
  queue: MessageQueue;
  channels: ChannelStore;
  log: MessageLog;
  ids: IdGenerator;
  now?: () => number;
  /** How many recent sends to remember for idempotency before they are sequenced. */
  recentCapacity?: number;
  /** Which id a send gets across chat servers; without it, only this server's memory and the MessageLog answer a resend. */
  claims?: SendClaims;
  /** Claims by outcome: `new`, `held` (a resend another server took first), `failed` (the send keeps its own id). */
  claimOutcomes?: Counter<"outcome">;
  /** Blocks between a direct chat's pair; without it they are not checked. */
  blocks?: BlockCache;
  /** How long after sending a sender may edit or delete a message; no limit without it. */
  changeWindows?: ChangeWindows;
}

/**
 * Accepts a send into the message-sync queue. The ack the caller gets after
 * `submit` resolves is the promise that the message will never be lost.
 */
export class QueueSubmitter implements MessageSubmitter {
  // Sends accepted but maybe not yet sequenced: a resend that arrives before
  // the first copy reaches the MessageLog gets the same message id. The
  // sequencer's own dedup is what guarantees one message; this keeps the id.
  // The promise settles once the first copy is durable (or refused), so a
  // concurrent copy is never acked before the first one is.
  private readonly recent: LruMap<string, Promise<bigint>>;
  private readonly members: ChannelMembers;
  /** A device's sends to a channel are published in the order it sent them: the partition's order is the channel's. */
  private readonly order = new SendOrder();

  constructor(private readonly deps: QueueSubmitterDeps) {
    this.recent = new LruMap(deps.recentCapacity ?? 100_000);
    this.members = new ChannelMembers(deps.channels, undefined, deps.blocks);
  }

  async submit(sender: Sender, cmd: SendCommand): Promise<SubmitResult> {
    cmd = validateSend(cmd);
    const { log, queue, ids } = this.deps;
    // Reserve the key before any await, so two copies of one send racing
    // each other get one message id.
    const recentKey = sendKey(sender.userId, sender.deviceId, cmd.channelId, cmd.clientMsgId);
    const known = this.recent.peek(recentKey);
    if (known !== undefined) return { messageId: await known, duplicate: true };
    const minted = ids.next();
    let settle!: (id: bigint | Error) => void;
    const accepted = new Promise<bigint>((resolve, reject) => {
      settle = (v) => (typeof v === "bigint" ? resolve(v) : reject(v));
    });
    accepted.catch(() => {}); // only concurrent copies observe a refusal
    this.recent.set(recentKey, accepted);
    const turn = this.order.take(sender, cmd.channelId);
    try {
      // Which of the membership read and the send claim answered last: a claim that outlasted the read
      // (Redis slower than the store for once) is a wait after it, as a named message's read is.
      let answers = 0;
      let checkedAt = 0;
      let claimedAt = 0;
      // A claim made for a send then refused is harmless: a resend is published under that id.
      const membership = this.members.requireSender(cmd.channelId, sender.userId, blocksApplyTo(cmd));
      void membership.then(() => (checkedAt = ++answers), () => undefined);
      const found: { byModerator?: boolean } = {};
      // Whether an edit or a reaction changes anything only the Sequencer knows, which has applied
      // the changes queued before it (this read may not have: an edit back to the text read here).
      const [, messageId] = await Promise.all([
        membership,
        this.claim(recentKey, minted).then((id) => {
          claimedAt = ++answers;
          return id;
        }),
        refusedAfterSenderCheck(membership, checkNamedMessage(log, this.deps.channels, sender, cmd, this.deps.changeWindows, (this.deps.now ?? Date.now)(), found)),
      ]);
      // A group's roster read before a wait (the named message's read, a send of the device's ahead
      // of this one, a send claim slower than the read) may be stale: the Sequencer checks no sender, so a sender removed meanwhile was
      // published after the removal's note and shown in the group after it. Read again once the turn
      // comes, as DirectSubmitter does; a direct pair is fixed. So is an admin's role, for a delete it
      // alone allowed: the Sequencer checks none either, and one demoted meanwhile deleted as a plain member.
      const claimWaited = this.deps.claims !== undefined && claimedAt > checkedAt;
      const recheck = (namesMessage(cmd) || turn.waiting || claimWaited) && this.members.knownMemberIds(cmd.channelId) === undefined;
      // The dedup read and the publish go out together, so the ack waits for
      // one round trip, not two. A resend of a send already stored is then
      // one more record, which the sequencer drops as a duplicate (a change
      // by its key too); a failed read only costs that resend its stored id
      // (it gets this one).
      const record = { key: cmd.channelId.toString(), value: encodeSubmitted(newMessage(messageId, sender, cmd, (this.deps.now ?? Date.now)())) };
      const [stored, published] = await Promise.allSettled([
        storedUnderKey(log, sender, cmd),
        turn.ready.then(() => {
          const publish = () => {
            const publishing = queue.publish(Topics.submitted, [record]);
            turn.done();
            return publishing;
          };
          if (!recheck) return publish();
          const moderating = found.byModerator ? isModerator(this.deps.channels, cmd.channelId, sender.userId) : true;
          return Promise.all([this.members.isMember(cmd.channelId, sender.userId), moderating]).then(
            ([still, allowed]) => {
              if (still && allowed) return publish();
              // Refused, the send lets the sends behind go on at once, as a publish does; so does a failed read.
              turn.done();
              throw still ? notModerator() : new ChatError("not_a_member", "not a member of this channel");
            },
            (err: unknown) => {
              turn.done();
              throw err;
            },
          );
        }),
      ]);
      if (stored.status === "fulfilled" && stored.value !== undefined) {
        settle(stored.value);
        // The read can come back after the pipeline stored this very publish (a
        // cold chat server, a slow read): that is this send, not an earlier one.
        const ours = stored.value === messageId;
        return { messageId: stored.value, duplicate: !ours || messageId !== minted };
      }
      if (published.status === "rejected") throw published.reason;
      settle(messageId);
      return { messageId, duplicate: messageId !== minted };
    } catch (err) {
      // Refused by a check the first copy passed (its target deleted since, the sender gone): stored all the same.
      const stored = err instanceof ChatError ? await storedUnderKey(log, sender, cmd).catch(() => undefined) : undefined;
      if (stored !== undefined) {
        settle(stored);
        return { messageId: stored, duplicate: true };
      }
      this.recent.delete(recentKey);
      // Not a check's refusal: the queue or the send claims did not answer, an engine's outage to the client.
      const refusal =
        err instanceof ChatError ? err : new ChatError("unavailable", "the message was not accepted; send it again", ENGINE_RETRY_AFTER_MS);
      settle(refusal);
      throw refusal;
    } finally {
      turn.done();
    }
  }

  async note(sender: Sender, channelId: Id, note: ChannelNote): Promise<SubmitResult> {
    const messageId = this.deps.ids.next();
    const m = noteMessage(messageId, sender, channelId, note, (this.deps.now ?? Date.now)());
    try {
      await this.deps.queue.publish(Topics.submitted, [{ key: channelId.toString(), value: encodeSubmitted(m) }]);
    } catch {
      throw new ChatError("unavailable", "the note was not written", ENGINE_RETRY_AFTER_MS);
    }
    return { messageId, duplicate: false };
  }

  /**
   * The id this send goes by: `minted`, unless another chat server claimed the
   * send first (a resend that moved servers while the first copy is still in
   * the pipeline). Without claims (Redis away) the send keeps its own id, as
   * the Sequencer still stores it once.
   */
  private async claim(key: string, minted: bigint): Promise<bigint> {
    const { claims, claimOutcomes } = this.deps;
    if (!claims) return minted;
    try {
      const holder = await claims.claim(key, minted);
      claimOutcomes?.inc({ outcome: holder === minted ? "new" : "held" });
      return holder;
    } catch {
      claimOutcomes?.inc({ outcome: "failed" });
      return minted;
    }
  }
}
