import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { Message } from "../../../gen/es/chat/v1/types_pb.js";
import { applyChange, isOutdated, outdatedBelow, type ChangeKind } from "../changes.js";
import type { ConnectionState, RealtimeSession } from "../session.js";
import type { PendingView } from "../views/messages.js";
import { key, newClientMsgId } from "./keys.js";
import type { OpenChat } from "./open-chat.js";

/** A message of mine on its way, shown below the chat's messages until its inbox entry comes back. */
export interface Pending extends PendingView {
  channelId: bigint;
}

/** An edit or delete of, or my reaction to, one of the open chat's messages, shown at once and until its inbox entry comes back. */
interface PendingChange {
  clientMsgId: string;
  channelId: bigint;
  seq: bigint;
  /** The new text; empty for a delete; a reaction's emoji, empty when taken back. */
  text: string;
  kind: ChangeKind;
  state: "queued" | "sending" | "sent";
  at: number;
  /** The id the server acked it under. */
  ackedId?: bigint;
  /** Acked under an id below this, it will never apply (`outdatedBelow`): the highest such bar of the changes seen since it was made. */
  bar: bigint;
}

export interface OutboxHost {
  readonly session: RealtimeSession;
  readonly me: bigint;
  open(): OpenChat | undefined;
  renderMessages(): void;
  rerenderMessages(): void;
  toast(text: string): void;
  /** My edit was refused: what was typed for it goes back to the edit box. */
  editRefused(channelId: bigint, seq: bigint, text: string): void;
}

/**
 * What I sent that the server has not given back yet: new messages, and
 * edits, deletes and reactions. Each waits in the session's outbox under a
 * client_msg_id of its own and shows here until its inbox entry arrives.
 */
export class Outbox {
  private readonly pending = new Map<string, Pending>();
  private readonly changes = new Map<string, PendingChange>();

  constructor(private readonly host: OutboxHost) {}

  /** A new message (with `replyToSeq`, 0n for none): shown at once, sent now or once the socket is open. */
  send(channelId: bigint, text: string, replyToSeq: bigint): void {
    const { session } = this.host;
    const clientMsgId = newClientMsgId();
    this.pending.set(clientMsgId, {
      clientMsgId,
      channelId,
      text,
      state: session.state === "open" ? "sending" : "queued",
      // Shown as the time it was sent: by the server's clock, as the messages around it are.
      at: session.serverNow(),
      replyToSeq,
    });
    session.send(channelId, text, clientMsgId, replyToSeq !== 0n ? { replyToSeq } : {});
  }

  /**
   * Sends an edit (text), a delete of, or my reaction (emoji, or "" to take
   * it back) to a message; it shows at once and waits in the outbox like a
   * send, under a client_msg_id of its own.
   */
  change(channelId: bigint, seq: bigint, text: string, kind: ChangeKind): void {
    const { session } = this.host;
    const clientMsgId = newClientMsgId();
    const state = session.state === "open" ? "sending" : "queued";
    // An edit shows when it was made by the server's clock, as the server's copy will.
    this.changes.set(clientMsgId, { clientMsgId, channelId, seq, text, kind, state, at: session.serverNow(), bar: 0n });
    const target = kind === "delete" ? { deleteSeq: seq } : kind === "reaction" ? { reactSeq: seq } : { editSeq: seq };
    session.send(channelId, text, clientMsgId, target);
    if (this.host.open()?.id === channelId) this.host.rerenderMessages();
  }

  retry(clientMsgId: string): void {
    const p = this.pending.get(clientMsgId);
    if (!p) return;
    p.state = this.host.session.state === "open" ? "sending" : "queued";
    p.error = undefined;
    this.host.session.send(p.channelId, p.text, clientMsgId, p.replyToSeq !== 0n ? { replyToSeq: p.replyToSeq } : {});
    this.host.renderMessages();
  }

  discard(clientMsgId: string): void {
    this.pending.delete(clientMsgId);
    this.host.session.discard(clientMsgId);
    this.host.renderMessages();
  }

  /** My message came back as a message of the chat: no longer shown as pending. */
  delivered(clientMsgId: string): void {
    this.pending.delete(clientMsgId);
  }

  /** My change came back as an inbox entry: says whether it was awaited. */
  changeBack(clientMsgId: string): boolean {
    return this.changes.delete(clientMsgId);
  }

  sent(clientMsgId: string, messageId: bigint): void {
    const change = this.changes.get(clientMsgId);
    if (change) {
      change.ackedId = messageId;
      // A newer change of the same kind came back before this ack: this one will not.
      if (isOutdated(change.bar, messageId)) this.changes.delete(clientMsgId);
      // Otherwise still shown as changed until its entry arrives, so the bubble does not flicker back.
      else change.state = "sent";
      if (this.host.open()?.id === change.channelId) this.host.rerenderMessages();
      return;
    }
    const p = this.pending.get(clientMsgId);
    if (!p) return;
    p.state = "sent";
    if (this.host.open()?.id === p.channelId) this.host.renderMessages();
  }

  failed(clientMsgId: string, error: string): void {
    const change = this.changes.get(clientMsgId);
    if (change) {
      this.changes.delete(clientMsgId);
      const what = { edit: "Could not edit the message", delete: "Could not delete the message", reaction: "Could not react to the message" }[change.kind];
      this.host.toast(`${what}: ${error}`);
      if (this.host.open()?.id === change.channelId) this.host.rerenderMessages();
      // What was typed for the edit is not lost with it: it goes back to the edit box.
      if (change.kind === "edit") this.host.editRefused(change.channelId, change.seq, change.text);
      return;
    }
    const p = this.pending.get(clientMsgId);
    if (!p) return;
    p.state = "failed";
    p.error = error;
    if (this.host.open()?.id === p.channelId) this.host.renderMessages();
  }

  /**
   * A send the server kept refusing as unavailable. A message shows as not
   * sent, its text kept, with Retry and Discard; the session keeps it and
   * sends it again by itself after the next reconnect. An edit, delete or
   * reaction is given up, as when refused for good: shown saved for long
   * after, it would look done.
   */
  stalled(clientMsgId: string, error: string): void {
    if (this.changes.has(clientMsgId)) this.host.session.discard(clientMsgId);
    this.failed(clientMsgId, error);
  }

  /**
   * Forgets my awaited changes that `entry` (a change) leaves with no chance
   * to apply; says whether there were any. Their message shows as it is.
   */
  outdate(entry: Message): boolean {
    let any = false;
    for (const p of this.changes.values()) {
      if (p.channelId !== entry.channelId) continue;
      const bar = outdatedBelow(entry, p.seq, p.kind, this.host.me);
      if (bar > p.bar) p.bar = bar;
      if (!isOutdated(p.bar, p.ackedId)) continue;
      this.changes.delete(p.clientMsgId);
      any = true;
    }
    return any;
  }

  /** My clear of the chat's history took the messages through `through` away: my changes to them are not shown. */
  cleared(channelId: bigint, through: bigint): void {
    for (const [id, p] of this.changes) if (p.channelId === channelId && p.seq <= through) this.changes.delete(id);
  }

  /** The socket opened or closed: what is shown as sending, queued or not sent follows. Says whether any changed. */
  connection(state: ConnectionState): boolean {
    const { session } = this.host;
    let changed = false;
    for (const p of [...this.pending.values(), ...this.changes.values()]) {
      const again = p.state === "queued" || (p.state === "failed" && session?.has(p.clientMsgId));
      const next = state === "open" ? (again ? "sending" : p.state) : p.state === "sending" ? "queued" : p.state;
      if (next === p.state) continue;
      p.state = next;
      if (next === "sending" && "error" in p) p.error = undefined;
      changed = true;
    }
    return changed;
  }

  /** Something the server has not taken yet lives only in this page. */
  unsent(): boolean {
    return [...this.pending.values(), ...this.changes.values()].some((p) => this.host.session?.has(p.clientMsgId));
  }

  pendingFor(channelId: bigint): Pending[] {
    return [...this.pending.values()].filter((p) => p.channelId === channelId);
  }

  /** The open chat's messages with my unconfirmed edits, deletes and reactions applied, and which of them are unconfirmed. */
  shown(open: OpenChat): { messages: Message[]; saving: Map<string, "queued" | "sending"> } {
    const saving = new Map<string, "queued" | "sending">();
    const mine = [...this.changes.values()].filter((p) => p.channelId === open.id);
    if (mine.length === 0) return { messages: open.messages, saving };
    const index = new Map(open.messages.map((m, i) => [key(m.seq), i]));
    const messages = [...open.messages];
    for (const p of mine) {
      const i = index.get(key(p.seq));
      if (i === undefined) continue;
      messages[i] = applyChange(messages[i]!, {
        text: p.text,
        deleted: p.kind === "delete",
        reaction: p.kind === "reaction",
        senderUserId: this.host.me,
        sentAt: timestampFromMs(p.at),
      });
      if (p.state !== "sent") saving.set(key(p.seq), p.state);
    }
    return { messages, saving };
  }
}
