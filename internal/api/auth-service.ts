import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { AuthService, CredentialsSchema, type Credentials, type DeviceInfo } from "../../gen/es/chat/v1/auth_pb.js";
import { ACCOUNT_DELETED, isDeletedUser, type PendingDeletion } from "../accounts/store.js";
import { PasswordHasher } from "../auth/passwords.js";
import { RefreshTokens } from "../auth/refresh.js";
import { CloseCode } from "../model/close-codes.js";
import { ChatError, isChatError } from "../model/errors.js";
import type { ChannelRecord, DeviceRecord, Id, UserRecord } from "../model/types.js";
import { DEFAULT_MAX_DEVICES_PER_ACCOUNT } from "../throttle/config.js";
import { caller, clientAddress, type Caller } from "./context.js";
import { deviceToProto, platformFromProto, userToProto } from "./convert.js";
import type { DeviceGate } from "./device-gate.js";
import type { AuthEvent } from "./metrics.js";
import type { ApiDeps } from "./deps.js";
import { forgetBlock, leaveGroup } from "./access.js";
import { tellOffline } from "./tell-offline.js";
import type { PushApiDeps } from "./push-service.js";
import * as v from "./validate.js";

/**
 * Logout and revocation close the device's sessions with CloseCode.loggedOut
 * (4003, internal/model/close-codes.ts): "do not reconnect this device". Not
 * 4001, which there means "unauthenticated, get a new token first", and a
 * signed-out device cannot get one.
 */
export const CLOSE_LOGGED_OUT: number = CloseCode.loggedOut;

/**
 * Listings of an account's devices a sign-out of all of them reads at most.
 * Logins that make a device after one listing are caught by the next, and a
 * login that verified a password no longer the account's undoes itself, so
 * more than two are only needed against a store slow to show new rows.
 */
const SIGN_OUT_ROUNDS = 5;
/** Blockers of a deleted account unblocked a read at a time. */
const BLOCKERS_PAGE = 500;
/** Unblocks a deleted account's deletion, and devices' sessions a sign-out of all of them closes, in flight at once: quick, without a burst. */
export const DELETION_UNBLOCKS_IN_FLIGHT = 8;

/**
 * Runs `fn` over `items`, at most DELETION_UNBLOCKS_IN_FLIGHT at once. A failure
 * stops new calls and is thrown once those in flight have ended, so no write of
 * this step is still under way when the caller goes on (or the client retries).
 */
async function eachBounded<T>(items: readonly T[], fn: (item: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  let failed = false;
  const worker = async () => {
    while (!failed && next < items.length) {
      const item = items[next++]!;
      try {
        await fn(item);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  };
  const ends = await Promise.allSettled(Array.from({ length: Math.min(DELETION_UNBLOCKS_IN_FLIGHT, items.length) }, worker));
  const failure = ends.find((e): e is PromiseRejectedResult => e.status === "rejected");
  if (failure) throw failure.reason;
}

/** How far apart the clocks of the api processes may be, beside a token's lifetime. */
const CLOCK_SKEW_ALLOWANCE_MS = 5 * 60_000;

/** The sign-outs of devices, and of an account's push endpoints, that AuthService and the deletion sweeper share. */
function signOuts(deps: ApiDeps & PushApiDeps, devices?: DeviceGate) {
  async function signOut(userId: Id, deviceId: Id, reason: string): Promise<void> {
    await revoke(userId, deviceId, reason);
    await endSessions(userId, deviceId, reason);
  }
  async function revoke(userId: Id, deviceId: Id, reason: string): Promise<void> {
    // A signed-out device is done for good: the next login makes a new one.
    await deps.accounts.revokeDevice(userId, deviceId);
    devices?.forget(userId, deviceId, reason === ACCOUNT_DELETED ? ACCOUNT_DELETED : undefined);
  }
  /** What a device's sign-out ends once it is stored: its sessions, then its push endpoint. Never throws. */
  async function endSessions(userId: Id, deviceId: Id, reason: string): Promise<void> {
    // Best effort once the sign-out is stored: failing the call would tell the client it did not
    // happen, and stop a sign-out of many devices part way. A session left open ends when its
    // access token expires (the chat server's sweep) and cannot reopen, since opening one checks
    // the device; no refresh is left to renew it.
    try {
      await deps.sessions.closeDevice(userId, deviceId, CLOSE_LOGGED_OUT, reason);
    } catch (err) {
      deps.logger?.warn({ err, userId: String(userId), deviceId: String(deviceId) }, "signed-out device's sessions not closed; they end with its access token");
    }
    // Its endpoint, after the sessions (which close at once): the notifier skips a signed-out
    // device's, but the address (a browser's or phone's push subscription) is no longer the
    // account's to keep. A registration racing this reads the device after its write, and takes
    // itself out again.
    await deps.push?.endpoints.remove(userId, deviceId).catch((err: unknown) => {
      deps.logger?.warn({ err, userId: String(userId), deviceId: String(deviceId) }, "signed-out device's push endpoint not removed; the notifier skips it");
    });
  }
  /**
   * Signs out every device of the account but `keep`, listing them again
   * until none is left (at most `rounds` listings): a login under way at the
   * first listing makes its device after it. Returns the devices signed out.
   */
  async function signOutAll(userId: Id, keep: Id | undefined, reason: string, rounds = SIGN_OUT_ROUNDS): Promise<DeviceRecord[]> {
    const out: DeviceRecord[] = [];
    for (let round = 0; round < rounds; round++) {
      const left = (await deps.accounts.listDevices(userId)).filter((d) => !d.revoked && d.deviceId !== keep);
      if (left.length === 0) break;
      // Every one signed out before any session is closed, and those closed side by side: one device
      // after another, each waited on the sessions of those before it (a chat server slow to answer
      // holds a close up to 2 s), the last left signed in, sending and refreshing, for that long.
      // A sign-out that fails part way still closes the sessions of those signed out before it.
      const revoked: DeviceRecord[] = [];
      try {
        for (const d of left) {
          await revoke(userId, d.deviceId, reason);
          revoked.push(d);
        }
      } finally {
        await eachBounded(revoked, (d) => endSessions(userId, d.deviceId, reason));
      }
      out.push(...left);
    }
    return out;
  }
  /** Every push endpoint of the account: its devices', and those of devices already forgotten (tidyDevices). */
  async function removeEndpoints(userId: Id): Promise<void> {
    const endpoints = deps.push?.endpoints;
    if (!endpoints) return;
    for (const e of await endpoints.listForUser(userId)) await endpoints.remove(userId, e.deviceId);
  }

  return { signOut, signOutAll, removeEndpoints };
}

/**
 * The steps of an account's deletion that AuthService.deleteAccount and the
 * deletion sweeper share. Every one of them may run again, and side by side
 * with another run of itself (in another api process): each write is one that
 * finds its work done (a revoked device, a friendship or membership gone, a
 * block there) and then changes nothing.
 */
function deletionSteps(deps: ApiDeps & PushApiDeps, devices?: DeviceGate) {
  const now = deps.now ?? Date.now;
  const { signOutAll, removeEndpoints } = signOuts(deps, devices);
  /** Friendships and friend requests; the friends go into `parted`. */
  async function dropFriends(me: Id, parted: Set<Id>): Promise<void> {
    for (const m of await deps.accounts.listFriends(me)) {
      parted.add(m);
      await deps.accounts.removeFriendship(me, m);
    }
    for (const r of await deps.accounts.listFriendRequests(me)) await deps.accounts.deleteFriendRequest(r.fromUserId, r.toUserId);
  }
  /** Blocks the account's direct-chat peers (into `parted`) and leaves its groups, as `by`. */
  async function leaveChats(me: Id, by: Caller, parted: Set<Id>): Promise<void> {
    const groups: ChannelRecord[] = [];
    // Side by side, as the unblocks of deleteAccount: one after another, an account with thousands of
    // direct chats took minutes on Cassandra (each block three Paxos rounds, and this runs twice).
    await eachBounded(await deps.channels.listMemberships(me), async (m) => {
      const channel = await deps.channels.getChannel(m.channelId);
      if (channel?.kind === "group") groups.push(channel);
      if (channel?.kind !== "direct") return;
      // Direct chats stay, their history being the other member's too; the
      // account blocks the peer, so that sends to it are refused (and told
      // it is gone) rather than stored for nobody.
      for (const { userId } of await deps.channels.listMembers(channel.channelId)) {
        if (userId === me) continue;
        parted.add(userId);
        await deps.accounts.putBlock(me, userId, now());
        await forgetBlock(deps, me, userId);
      }
    });
    // One after another: each leaving tells the members it leaves apart, read from the groups the
    // account is still in; side by side, one shared in two groups could be told by neither.
    for (const channel of groups) await leaveGroup(deps, channel, by);
  }
  /**
   * What runs once the account is marked deleted. A login that read the
   * account before it was marked may have made its device since; an add to a
   * group, a new direct chat, a friend request or a friendship that checked
   * the account before may have landed since. Each of those looks at the
   * account again after it writes, and undoes itself if it finds it marked;
   * what landed before the mark is found here.
   */
  async function finalPass(me: Id, by: Caller, parted: Set<Id>): Promise<void> {
    await signOutAll(me, undefined, ACCOUNT_DELETED);
    await removeEndpoints(me);
    await dropFriends(me, parted);
    await leaveChats(me, by, parted);
    // The sign-outs above announce the account offline, but read who to tell later, maybe after the
    // friendships and chats are gone: one missed would keep it online on their screens for good.
    // Told here as an unfriending or a block tells, with no last seen (a group's members are told
    // by leaving it). Best effort: the deletion stands.
    if (parted.size > 0) {
      await tellOffline(deps, me, [...parted]).catch((err: unknown) => {
        deps.logger?.warn({ err }, "presence after an account's deletion not told");
      });
    }
  }
  return { dropFriends, leaveChats, finalPass };
}

/**
 * The final pass of a deletion recorded pending (deleteAccount), for the
 * sweep to run when the process that marked the account died before it
 * ended. Those told the account is offline are the peers and friends it
 * finds, and the friends recorded with the deletion: those a first pass had
 * already dropped are found nowhere else.
 */
export function deletionFinisher(deps: ApiDeps & PushApiDeps, devices?: DeviceGate): (pending: PendingDeletion) => Promise<void> {
  const { finalPass } = deletionSteps(deps, devices);
  return (p) => finalPass(p.userId, { userId: p.userId, deviceId: p.deviceId }, new Set(p.tellOffline));
}

export function authService(deps: ApiDeps & PushApiDeps, devices?: DeviceGate): Partial<ServiceImpl<typeof AuthService>> {
  const now = deps.now ?? Date.now;
  const passwords = deps.passwords ?? new PasswordHasher();
  const count = (event: AuthEvent) => deps.metrics?.auth.inc({ event });
  const { signOut, signOutAll, removeEndpoints } = signOuts(deps, devices);
  const deletion = deletionSteps(deps, devices);
  /**
   * At a login: forgets the devices signed out long enough ago that none of
   * their access tokens can still be valid (an account that signs in and out
   * every day would otherwise pile up rows), and past the account's device
   * limit signs out the devices seen least recently (never `keep`, the one
   * just made, nor a racing login's made after it). `existed`: the devices
   * listed before `keep` was made.
   */
  async function tidyDevices(userId: Id, keep: DeviceRecord, existed: ReadonlySet<Id>): Promise<void> {
    const max = deps.maxDevicesPerAccount ?? DEFAULT_MAX_DEVICES_PER_ACCOUNT;
    const devices = await deps.accounts.listDevices(userId);
    // A device's newest access token was signed when it was last seen (its login or last refresh).
    const tokensExpiredBefore = now() - deps.signer.ttlMs - CLOCK_SKEW_ALLOWANCE_MS;
    for (const d of devices) {
      if (!d.revoked || d.lastSeenAtMs >= tokensExpiredBefore) continue;
      await deps.accounts.forgetDevice(userId, d.deviceId);
      await deps.inbox.dropCursor(userId, d.deviceId);
      await deps.push?.endpoints.remove(userId, d.deviceId);
    }
    const active = devices.filter((d) => !d.revoked && d.deviceId !== keep.deviceId);
    const excess = active.length + 1 - max;
    if (excess <= 0) return;
    const byAge = (a: DeviceRecord, b: DeviceRecord) => a.lastSeenAtMs - b.lastSeenAtMs || (a.deviceId < b.deviceId ? -1 : a.deviceId > b.deviceId ? 1 : 0);
    // Never one made after this login's: a racing login made it, and prunes this one if need be
    // (it lists after its own create, so sees this one). Two at a limit of 1 each signed the other out.
    // By when it was made, not last seen: one refreshed on a process whose clock is ahead is no racing login.
    // And only among those not listed before this login made its device: one that was, made on a process
    // whose clock is ahead, is stamped "after" yet no racing login's, and was spared for good, the account
    // past its limit by one such login after another.
    const madeBefore = (d: DeviceRecord) => d.createdAtMs - keep.createdAtMs || (d.deviceId < keep.deviceId ? -1 : d.deviceId > keep.deviceId ? 1 : 0);
    const oldest = active.filter((d) => existed.has(d.deviceId) || madeBefore(d) < 0).sort(byAge).slice(0, excess);
    for (const d of oldest) {
      count("device_pruned");
      await signOut(userId, d.deviceId, `signed out: the account signed in on more than ${max} devices`);
    }
  }
  const refresh = new RefreshTokens(deps.accounts, {
    now,
    ttlMs: deps.refreshTtlMs,
    reuseGraceMs: deps.refreshReuseGraceMs,
    onReuse: async ({ userId, deviceId }) => {
      count("refresh_reused");
      deps.logger?.warn({ userId: String(userId), deviceId: String(deviceId) }, "refresh token used twice: device signed out");
      await signOut(userId, deviceId, "signed out: its refresh token was used twice");
    },
  });

  /**
   * The account's password, confirmed before a change to the account. A
   * stolen access token must not become a way to guess it: a wrong password
   * counts, and is throttled, as a failed login of the account.
   */
  async function confirmPassword(userId: Id, field: string, password: string, address: string): Promise<UserRecord> {
    const user = await deps.accounts.getUser(userId);
    // Deleted through another api process, whose device this one's gate still trusts: told as its devices are.
    if (!user || isDeletedUser(user)) throw new ChatError("unauthenticated", ACCOUNT_DELETED);
    // Taken before the check counts a failure, as a login's: refused for the load it is no guess, and
    // counted, the owner's confirmations a storm refused locked the owner out.
    const release = passwords.reserve();
    const { counted, ok } = await (async () => {
      const counted = await deps.limits?.checkLogin(user.username, address, user).catch((e: unknown) => {
        count("login_throttled");
        throw e;
      });
      const ok = !v.passwordTooLong(password) && (await passwords.verify(user.passwordHash, password, true));
      return { counted, ok };
    })().finally(release);
    if (!ok) {
      count("login_failed");
      throw new ChatError("permission_denied", `${field} is wrong`);
    }
    await deps.limits?.signedIn(user.username, user, address, counted?.failures);
    return user;
  }

  async function credentials(userId: Id, deviceId: Id, refreshToken?: string): Promise<Credentials> {
    const access = deps.signer.sign({ userId, deviceId });
    return create(CredentialsSchema, {
      accessToken: access.token,
      accessTokenExpiresAt: timestampFromMs(access.claims.expiresAtMs),
      refreshToken: refreshToken ?? (await refresh.issue(userId, deviceId)).token,
      userId,
      deviceId,
    });
  }

  /** Checked before anything is made or counted, so that a bad one leaves nothing behind. */
  function deviceInfo(info: DeviceInfo | undefined): Pick<DeviceRecord, "name" | "platform"> {
    const platform = platformFromProto(info?.platform ?? 0);
    const name = info?.name.trim() ? v.text("device.name", info.name, 64) : platform === "unspecified" ? "device" : platform;
    return { name, platform };
  }

  async function newDevice(user: UserRecord, { name, platform }: Pick<DeviceRecord, "name" | "platform">): Promise<DeviceRecord> {
    const t = now();
    const device: DeviceRecord = {
      userId: user.userId,
      deviceId: deps.ids.next(),
      name,
      platform,
      createdAtMs: t,
      lastSeenAtMs: t,
      revoked: false,
    };
    await deps.accounts.createDevice(device).catch(async (e: unknown) => {
      // A create that failed against the store (a timeout) may still have landed, a device signed in
      // that its client never heard of, counting toward the account's limit. Revoking one that never
      // landed does nothing.
      if (!(isChatError(e) && e.code === "already_exists")) await undoDevice(device.userId, device.deviceId);
      throw e;
    });
    return device;
  }

  /** Signs out the device of a login or sign-up that failed after making it; best effort, the failure being the caller's answer. */
  async function undoDevice(userId: Id, deviceId: Id): Promise<void> {
    await deps.accounts.revokeDevice(userId, deviceId).catch((err: unknown) => {
      deps.logger?.warn({ err, userId: String(userId), deviceId: String(deviceId) }, "a failed login's device not signed out; a later login prunes it first (seen least recently)");
    });
  }

  return {
    async signUp(req, ctx) {
      const username = v.username(req.username);
      v.password(req.password);
      // An empty display name falls back to the username rather than failing sign-up.
      const displayName = req.displayName.trim() ? v.displayName(req.displayName) : username;
      const info = deviceInfo(req.device);
      if (await deps.accounts.findUserByUsername(username)) {
        throw new ChatError("already_exists", "username is taken");
      }
      const user: UserRecord = {
        userId: deps.ids.next(),
        username,
        displayName,
        passwordHash: await passwords.hash(req.password),
        createdAtMs: now(),
      };
      // Still refuses a concurrent sign-up of the same name, told as the check above tells it
      // (each store words its own refusal).
      await deps.accounts.createUser(user).catch((e: unknown) => {
        throw isChatError(e) && e.code === "already_exists" ? new ChatError("already_exists", "username is taken") : e;
      });
      let device: DeviceRecord | undefined;
      try {
        device = await newDevice(user, info);
        // Where an account was made is its owner's: a guesser spread over other addresses never locks it.
        // Failures counted against the name before (it was free, or a deleted account's) were nobody's:
        // forgotten, or the new owner would be refused its first logins.
        await deps.limits?.signedIn(username, user, clientAddress(ctx), true);
        return { credentials: await credentials(user.userId, device.deviceId), user: userToProto(user) };
      } catch (e) {
        // Its client was told the sign-up failed, and holds no token: kept, the account took its name,
        // and the sign-up asked again was refused "username is taken". Best effort, as undoDevice.
        if (device) await undoDevice(user.userId, device.deviceId);
        // Unless its owner holds it by now: a client that gave up on a slow sign-up, told "username is
        // taken" when it asked again, logs in; a device of that login is theirs, the account with it.
        // Unread, it is kept too: a name left taken is the lesser loss. (A login whose device lands
        // after this read re-reads the account after making it, and fails if deleted by then.)
        const held = await deps.accounts.listDevices(user.userId).then(
          (ds) => ds.some((d) => !d.revoked && d.deviceId !== device?.deviceId),
          () => true,
        );
        if (!held) {
          await deps.accounts.deleteUser(user.userId).catch((err: unknown) => {
            deps.logger?.warn({ err, userId: String(user.userId) }, "a failed sign-up's account not deleted; its name stays taken");
          });
        }
        throw e;
      }
    },

    async login(req, ctx) {
      const fail = new ChatError("unauthenticated", "wrong username or password");
      // Typed in an East Asian keyboard's wide mode ("ａｌｉｃｅ"), a name is the ASCII one, as SearchUsers
      // takes it: NFKC makes it so, one character for one (longer than any name, it is none either way).
      const username = req.username.length <= 32 ? req.username.normalize("NFKC") : req.username;
      // No account has a name sign-up refuses, so one is answered at once and counted against
      // nobody: the answer reveals only the public format, and a made-up name cannot fill
      // another account's count.
      if (!v.isUsername(username) || v.passwordTooLong(req.password)) throw fail;
      const info = deviceInfo(req.device);
      const address = clientAddress(ctx);
      // Before the login is counted as a failure: one refused for the load (UNAVAILABLE) is no guess.
      const release = passwords.reserve();
      const { user, counted, ok } = await (async () => {
        // Read first: the addresses exempt from the account-wide refusal are the account's, not its name's.
        const user = await deps.accounts.findUserByUsername(username);
        const counted = await deps.limits?.checkLogin(username, address, user).catch((e: unknown) => {
          count("login_throttled");
          throw e;
        });
        const ok = user ? await passwords.verify(user.passwordHash, req.password, true) : await passwords.verifyNothing(req.password, true);
        return { user, counted, ok };
      })().finally(release);
      // Unknown names stay counted as failures too, or the counter would tell which names exist.
      if (!user || !ok) {
        count("login_failed");
        throw fail;
      }
      await deps.limits?.signedIn(username, user, address, counted?.failures);
      // Before the device is made: whatever is listed here is no racing login's (tidyDevices).
      const existed = new Set((await deps.accounts.listDevices(user.userId)).map((d) => d.deviceId));
      const device = await newDevice(user, info);
      try {
        // The password may have changed, or the account been deleted, since it was read: a sign-out of
        // every device then could have listed them before this one was made, so it is undone here.
        const current = await deps.accounts.getUser(user.userId);
        if (current?.passwordHash !== user.passwordHash || isDeletedUser(current)) {
          await deps.accounts.revokeDevice(user.userId, device.deviceId);
          throw fail;
        }
        await tidyDevices(user.userId, device, existed);
        return { credentials: await credentials(user.userId, device.deviceId), user: userToProto(user) };
      } catch (e) {
        // A login that fails leaves no device signed in: its client never got the tokens, and the
        // device would count toward the account's limit (and be listed) until pruned.
        if (e !== fail) await undoDevice(user.userId, device.deviceId);
        throw e;
      }
    },

    async refresh(req, ctx) {
      // Held to its account's rate before it rotates: every rotation, a retry's too, stores a used
      // token kept for the token's life, and nothing else bounds how fast a holder asks.
      const owner = await refresh.owner(req.refreshToken);
      if (owner !== undefined) deps.limits?.takeCall(owner);
      // A token nobody was issued (made up, or forgotten) has no account to hold it to, yet its take
      // below still costs the store (on SQLite the write lock, shared with every message write, and
      // a sweep of expired used tokens): those are held to the address's allowance of sign-ins.
      // Devices behind one NAT present tokens that have an owner.
      else deps.limits?.takeAuth(clientAddress(ctx));
      const next = await refresh.rotate(req.refreshToken);
      const { userId, deviceId } = next.record;
      const user = await deps.accounts.getUser(userId);
      // Whatever device of a deleted account was left signed in ends here.
      if (!user || isDeletedUser(user)) {
        await signOut(userId, deviceId, "signed out: the account was deleted");
        throw new ChatError("unauthenticated", "the account was deleted");
      }
      await deps.accounts.touchDevice(userId, deviceId, now());
      return { credentials: await credentials(userId, deviceId, next.token) };
    },

    async logout(_req, ctx) {
      const me = caller(ctx);
      await signOut(me.userId, me.deviceId, "logged out");
      return {};
    },

    async listDevices(_req, ctx) {
      const me = caller(ctx);
      const devices = await deps.accounts.listDevices(me.userId);
      return { devices: devices.filter((d) => !d.revoked).map((d) => deviceToProto(d, me.deviceId)) };
    },

    async revokeDevice(req, ctx) {
      const me = caller(ctx);
      const deviceId = v.id("device_id", req.deviceId);
      const device = await deps.accounts.getDevice(me.userId, deviceId);
      if (!device || device.revoked) throw new ChatError("not_found", "no such device on this account");
      await signOut(me.userId, deviceId, deviceId === me.deviceId ? "logged out" : "device revoked");
      return {};
    },

    async changePassword(req, ctx) {
      const me = caller(ctx);
      // Checked first: a new password that would be refused costs no hash and counts no failure.
      v.password(req.newPassword);
      const address = clientAddress(ctx);
      const user = await confirmPassword(me.userId, "current_password", req.currentPassword, address);
      const passwordHash = await passwords.hash(req.newPassword);
      await deps.accounts.updatePasswordHash(user.userId, passwordHash);
      // The addresses known before are so with the old password alone (limits.ts, knownKey): the one
      // whose holder just proved it and chose the new one stays the account's.
      await deps.limits?.signedIn(user.username, { userId: user.userId, passwordHash }, address);
      // One listing, after the new password is stored: a login that checked the old one and makes its
      // device after it reads the account again and undoes itself. A device a second listing found had
      // signed in with the new password (its owner, on a device just signed out, while a slow chat
      // server held up the sign-out of the others) and was signed out with the old ones.
      const signedOut = req.keepOtherDevices ? [] : await signOutAll(user.userId, me.deviceId, "signed out: the account's password was changed", 1);
      count("password_changed");
      return { devicesSignedOut: signedOut.length };
    },

    async deleteAccount(req, ctx) {
      const by = caller(ctx);
      const me = by.userId;
      await confirmPassword(me, "password", req.password, clientAddress(ctx));
      // Every step below can be run again: a deletion cut short before the
      // mark (deleteUser) is finished by signing in (the password still works
      // until then) and asking again; one cut short after it, by the sweep.
      // Recorded pending first, with the friends: once their friendships are dropped nothing else
      // names them, and a sweep finishing this deletion after its process died (or a later attempt,
      // after this one was cut short) told them nothing, their sessions showing the account online.
      // (Direct-chat peers stay members, found again; a group's members are told as it is left.)
      // Recorded again, at a new time, just before the mark (below).
      const pending = { userId: me, deviceId: by.deviceId, atMs: now() };
      const earlier = await deps.accounts.putPendingDeletion({ ...pending, tellOffline: await deps.accounts.listFriends(me) });
      // Signed out before anything is dropped, so that nothing the account does races its deletion.
      await signOutAll(me, undefined, ACCOUNT_DELETED);
      await removeEndpoints(me);
      /** Friends and direct-chat peers: those whose view of the account's presence ends here, and who are told so below. */
      const parted = new Set<Id>(earlier);
      await deletion.dropFriends(me, parted);
      const friends = [...parted];
      // Side by side: on Cassandra each unblock is several Paxos rounds, one after another minutes for
      // an account with thousands. Each batch ends before the next read and before leaveChats, whose
      // blocks of the direct-chat peers no unblock here may then take away.
      await eachBounded(await deps.accounts.listBlocks(me), ({ userId }) => deps.accounts.deleteBlock(me, userId));
      // Anyone may have blocked the account: read a page at a time.
      for (let after: Id | undefined; ;) {
        const blockers = await deps.accounts.listBlockers(me, { after, limit: BLOCKERS_PAGE });
        await eachBounded(blockers, (userId) => deps.accounts.deleteBlock(userId, me));
        if (blockers.length < BLOCKERS_PAGE) break;
        after = blockers[blockers.length - 1];
      }
      await deletion.leaveChats(me, by, parted);
      // Past the mark nobody can ask again (the password no longer works): recorded, so that a
      // process dying before the final pass has run leaves the deletion to the sweep
      // (deletion-sweeper.ts), which finishes it. Its time moved to just before the mark: the sweep
      // leaves a record for DELETION_SWEEP_GRACE_MS to a deletion still running, and the first pass
      // may take a minute. With the friends the first pass dropped (one made since the first record).
      pending.atMs = now();
      for (const id of await deps.accounts.putPendingDeletion({ ...pending, tellOffline: friends })) parted.add(id);
      await deps.accounts.deleteUser(me);
      await deletion.finalPass(me, by, parted);
      // Best effort: the deletion is done, and a record left makes the sweep run the final pass again.
      await deps.accounts.removePendingDeletion(me, pending.atMs).catch((err: unknown) => {
        deps.logger?.warn({ err, userId: String(me) }, "finished deletion's pending record not removed; the sweep removes it");
      });
      count("account_deleted");
      return {};
    },
  };
}
