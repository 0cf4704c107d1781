import type { MembershipCheck } from "../../channels/store.js";
import { ChatError } from "../../model/errors.js";
import type { Id } from "../../model/types.js";
import type { ChannelFence, Plan, State } from "./channel-fence.js";
import type { ChannelQueries } from "./channel-queries.js";
import { big, StorageUnavailable, type Db } from "./session.js";

/** `channels.invite_code` of a group with no invite code (null: not written since schema 8; see codeIn). */
const NO_CODE = "";

/**
 * A group's invite code: a static column of its partition, changed through
 * the fence, and `invite_codes` (code -> channel) for a join by link.
 */
export class InviteCodes {
  constructor(
    private readonly db: Db,
    private readonly q: ChannelQueries,
    private readonly fence: ChannelFence,
  ) {}

  async setInviteCode(channelId: Id, code: string | undefined, check?: MembershipCheck): Promise<void> {
    // The code's row first: it leads nowhere until the group names it, and
    // the old code stops at that same write, a batch through the fence (the
    // check sees the roles as it lands). The old code's row is then dropped,
    // best effort: a row left behind leads nowhere (channelOfInvite).
    if (code !== undefined) await this.db.write(this.q.putInviteCode, [code, channelId]);
    let old: string | undefined;
    try {
      old = await this.fence.fenced(channelId, async (s): Promise<Plan<string | undefined>> => {
        if (!s) {
          if (code === undefined) return { result: undefined };
          throw new ChatError("not_found", `channel ${channelId} not found`);
        }
        check?.(s.members);
        return { result: await this.codeIn(channelId, s), writes: [{ query: this.q.setCode, params: [code ?? NO_CODE, channelId] }] };
      });
    } catch (e) {
      if (code !== undefined && neverNamed(e)) await this.db.write(this.q.dropInviteCode, [code]).catch(() => undefined);
      throw e;
    }
    await this.keepLegacyInStep(channelId, code);
    if (old !== undefined && old !== code) await this.db.write(this.q.dropInviteCode, [old]).catch(() => undefined);
  }

  async claimInviteCode(channelId: Id, code: string, check?: MembershipCheck): Promise<string> {
    let wrote = false;
    let got: string;
    try {
      got = await this.fence.fenced(channelId, async (s): Promise<Plan<string>> => {
        if (!s) throw new ChatError("not_found", `channel ${channelId} not found`);
        check?.(s.members);
        // The code and the roles come from one read: a caller removed before
        // a reset never learns the new code. Nothing to write then.
        if (s.inviteCode !== null && s.inviteCode !== NO_CODE) return { result: s.inviteCode };
        // None yet, or one named only in channel_invites (before schema 8),
        // which is carried over: either way through the fence, so a reset or
        // a claim landing meanwhile makes this batch lose and plan again.
        const claimed = (s.inviteCode === null ? await this.legacyCodeOf(channelId) : undefined) ?? code;
        if (claimed === code && !wrote) {
          await this.db.write(this.q.putInviteCode, [code, channelId]);
          wrote = true;
        }
        return { result: claimed, writes: [{ query: this.q.setCode, params: [claimed, channelId] }] };
      });
    } catch (e) {
      if (wrote && neverNamed(e)) await this.db.write(this.q.dropInviteCode, [code]).catch(() => undefined);
      throw e;
    }
    // Another manager's claim won: this one's code leads nowhere.
    if (wrote && got !== code) await this.db.write(this.q.dropInviteCode, [code]).catch(() => undefined);
    if (got === code) await this.keepLegacyInStep(channelId, code);
    return got;
  }

  async inviteCodeOf(channelId: Id): Promise<string | undefined> {
    const row = await this.db.one(this.q.code, [channelId]);
    const held = row?.get("invite_code") as string | null | undefined;
    if (held !== null && held !== undefined) return held === NO_CODE ? undefined : held;
    return this.legacyCodeOf(channelId);
  }

  async channelOfInvite(code: string): Promise<Id | undefined> {
    const [row] = await this.db.rows(this.q.channelOfCode, [code]);
    if (!row) return undefined;
    const channelId = big(row.get("channel_id"));
    return (await this.inviteCodeOf(channelId)) === code ? channelId : undefined;
  }

  /**
   * The group's invite code in a state read through the fence: its
   * invite_code, or, for a group none of whose codes was written since
   * schema 8 (null), the one channel_invites names. Every change of the
   * code since writes invite_code and moves the version, so a batch planned
   * on what this returns loses if the code changed after the state was read.
   */
  async codeIn(channelId: Id, s: State): Promise<string | undefined> {
    if (s.inviteCode !== null) return s.inviteCode === NO_CODE ? undefined : s.inviteCode;
    return this.legacyCodeOf(channelId);
  }

  private async legacyCodeOf(channelId: Id): Promise<string | undefined> {
    const [row] = await this.db.rows(this.q.inviteOf, [channelId]);
    return (row?.get("code") as string | null | undefined) ?? undefined;
  }

  /**
   * channel_invites after the code changed, for processes of a build before
   * schema 8 still running during an upgrade (this build reads it only
   * where invite_code was never written). Best effort, and two changes at
   * once may land there in either order: the code in `channels` is the one
   * that counts.
   */
  private async keepLegacyInStep(channelId: Id, code: string | undefined): Promise<void> {
    const write = code === undefined
      ? this.db.write(this.q.dropInviteOf, [channelId])
      : this.db.write(this.q.putInviteOf, [channelId, code]);
    await write.catch(() => undefined);
  }
}

/**
 * Whether a failed change of the invite code certainly named no new code:
 * refused (a check, a missing channel), every batch lost, or a request that
 * certainly did nothing. A timed-out batch may have landed (or land later),
 * so its code's row is kept then.
 */
const neverNamed = (e: unknown) => e instanceof ChatError && !(e instanceof StorageUnavailable && e.unknownOutcome);
