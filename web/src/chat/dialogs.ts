import { ChannelKind, MemberRole, type User } from "../../../gen/es/chat/v1/types_pb.js";
import { describeError, type Api } from "../api.js";
import type { Auth } from "../auth.js";
import type { Modal } from "../dom.js";
import { openAccountDialog } from "../views/account-dialog.js";
import { openFriendsDialog } from "../views/friends-dialog.js";
import { openGroupDialog } from "../views/group-dialog.js";
import { openInviteDialog } from "../views/invite-dialog.js";
import { openJoinDialog } from "../views/join-dialog.js";
import { openMembersDialog } from "../views/members-dialog.js";
import { manages } from "./channel-rules.js";
import type { ChatList } from "./chat-list.js";
import type { OpenChat } from "./open-chat.js";
import type { Users } from "./users.js";

/** The web client's link for an invite code (what GetInviteLink gives is the code alone). */
const inviteUrl = (code: string) => `${location.origin}/#/join/${code}`;

export interface DialogsHost {
  readonly api: Api;
  readonly auth: Auth;
  readonly me: bigint;
  readonly users: Users;
  readonly chats: ChatList;
  open(): OpenChat | undefined;
  destroyed(): boolean;
  go(channelId: bigint): void;
  closeChat(): void;
  startDirect(user: User): Promise<void>;
  renderSidebar(): void;
  renderMe(name: string, username: string): void;
  signOut(message: string): void;
}

/** The modal dialogs (friends, account, a new group, a group's members and invite link, an invite opened), which close with the app. */
export class Dialogs {
  /** The dialog of the invite link the page was opened at (#/join/<code>). */
  private joining?: { code: string; close(): void };
  /**
   * The other dialogs opened (new group, account, a group's invite link):
   * modal, over the whole page, so they close with the app. Left open after a
   * sign-out (here or in another tab) they kept the sign-in screen under them
   * out of reach, and acted for whoever signed in next. Each leaves the set
   * when it closes: kept, every dialog opened stayed in memory until sign-out.
   */
  private readonly dialogs = new Set<Modal>();

  constructor(private readonly host: DialogsHost) {}

  private keepDialog(modal: Modal): void {
    this.dialogs.add(modal);
    void modal.closed.then(() => this.dialogs.delete(modal));
  }

  closeAll(): void {
    this.joining?.close();
    for (const d of this.dialogs) d.close();
    this.dialogs.clear();
  }

  friends(): void {
    const { api, users } = this.host;
    this.keepDialog(openFriendsDialog({
      read: async () => {
        const [{ friends }, { requests }] = await Promise.all([api.users.listFriends({}), api.users.listFriendRequests({})]);
        return { friends, requests };
      },
      search: (q) => users.searchUsers(q),
      ask: async (user) => {
        await api.users.sendFriendRequest({ userId: user.userId });
      },
      answer: async (user, accept) => {
        await api.users.respondFriendRequest({ userId: user.userId, accept });
      },
      remove: async (user) => {
        await api.users.removeFriend({ userId: user.userId });
      },
      message: (user) => void this.host.startDirect(user),
    }));
  }

  account(): void {
    const { api, auth, users } = this.host;
    this.keepDialog(openAccountDialog({
      displayName: auth.current?.displayName ?? "",
      rename: async (displayName) => {
        const user = (await api.users.updateProfile({ displayName })).user!;
        users.set(user);
        auth.updateProfile(user);
        this.host.renderMe(user.displayName || user.username, user.username);
        return user.displayName;
      },
      changePassword: async (currentPassword, newPassword) =>
        (await api.auth.changePassword({ currentPassword, newPassword })).devicesSignedOut,
      deleteAccount: async (password) => {
        await api.auth.deleteAccount({ password });
        this.host.signOut("Your account was deleted.");
      },
    }));
  }

  /**
   * An invite link opened (#/join/<code>): where it leads, and a join only
   * when asked. A link opened signed out keeps its hash through the sign-in
   * screen, so it lands here after logging in or signing up.
   */
  invite(code: string): void {
    if (this.joining?.code === code) return;
    this.joining?.close();
    this.host.closeChat();
    const hash = location.hash;
    const dialog = openJoinDialog({
      describe: () => this.host.api.channels.describeInvite({ code }),
      join: async (target) => this.host.go(target.member ? target.channelId : await this.joinByInvite(code)),
      closed: () => {
        if (this.joining === dialog) this.joining = undefined;
        // Dismissed: the link is done with. Joined: the hash is the chat's already.
        if (location.hash === hash && !this.host.destroyed()) location.hash = "";
      },
    });
    this.joining = Object.assign(dialog, { code });
  }

  private async joinByInvite(code: string): Promise<bigint> {
    const c = (await this.host.api.channels.joinByInvite({ code })).channel!;
    this.host.chats.upsert(c);
    this.host.renderSidebar();
    return c.channelId;
  }

  /** The open group's invite link, for its owner and admins. */
  inviteLink(): void {
    const open = this.host.open();
    const c = open && this.host.chats.get(open.id);
    if (!c || !manages(c)) return;
    const channelId = c.channelId;
    const { api } = this.host;
    this.keepDialog(openInviteDialog(this.host.users.channelName(c), {
      link: async (reset) => inviteUrl((await api.channels.getInviteLink({ channelId, reset })).code),
      revoke: async () => {
        await api.channels.revokeInviteLink({ channelId });
      },
    }));
  }

  /** The open group's members: every member sees who is in it; its owner and admins change that. */
  members(): void {
    const open = this.host.open();
    const c = open && this.host.chats.get(open.id);
    if (c?.kind !== ChannelKind.GROUP) return;
    const channelId = c.channelId;
    const { api, users, chats, me } = this.host;
    this.keepDialog(openMembersDialog(users.channelName(c), {
      members: async () => {
        const { members } = await api.channels.listMembers({ channelId });
        await users.ensureUsers(members.map((m) => m.userId));
        // One whose name could not be read (gone meanwhile) is left out rather than shown nameless.
        return members.flatMap((m) => {
          const user = users.get(m.userId);
          return user ? [{ user, role: m.role, me: m.userId === me }] : [];
        });
      },
      myRole: () => chats.get(channelId)?.myRole ?? MemberRole.MEMBER,
      search: (q) => users.searchUsers(q),
      // The chat's new member count and notes come as channel events, as for anyone's change.
      add: async (user) => {
        await api.channels.addMembers({ channelId, userIds: [user.userId] });
      },
      remove: async (user) => {
        await api.channels.removeMember({ channelId, userId: user.userId });
      },
      setAdmin: async (user, admin) => {
        await api.channels.setMemberRole({ channelId, userId: user.userId, role: admin ? MemberRole.ADMIN : MemberRole.MEMBER });
      },
      rename: async (title) => (await api.channels.updateGroup({ channelId, title })).channel?.title ?? title,
    }));
  }

  newGroup(): void {
    const { api, users } = this.host;
    this.keepDialog(openGroupDialog({
      search: (q) => users.searchUsers(q),
      isMe: (q) => users.isMyUsername(q),
      create: async (title, members) => {
        try {
          const c = (await api.channels.createGroup({ title, memberUserIds: members.map((m) => m.userId) })).channel!;
          this.host.chats.upsert(c);
          this.host.renderSidebar();
          this.host.go(c.channelId);
        } catch (err) {
          throw new Error(describeError(err));
        }
      },
    }));
  }
}
