import { create, fromBinary, fromJsonString, toBinary, toJsonString, type MessageInitShape } from "@bufbuild/protobuf";
import WebSocket from "ws";
import { ClientFrameSchema, ServerFrameSchema, type ServerFrame } from "../../gen/es/chat/v1/session_pb.js";
import { ErrorCode, type InboxEntry, type Message } from "../../gen/es/chat/v1/types_pb.js";
import { waitFor, waitOut } from "./wait.js";

/**
 * A test device: one WebSocket session that behaves like a real client. It
 * keeps its inbox entries by seq (dropping repeats, as clients must), acks
 * what it stored, remembers its cursor across reconnects, and records every
 * frame so tests can check what was seen and in what order.
 */
export class TestDevice {
  ws?: WebSocket;
  frames: ServerFrame[] = [];
  /** Inbox entries in the order they arrived, after dropping repeats. */
  readonly entries: InboxEntry[] = [];
  /** Every inbox seq received, repeats included: repeats across sessions are allowed, within one session they are a bug. */
  readonly received: bigint[] = [];
  cursor = 0n;
  closeCode?: number;
  closeReason?: string;
  private nextRef = 1n;
  private ackTimer?: NodeJS.Timeout;

  constructor(
    readonly wsUrl: string,
    public token: string,
    readonly options: { json?: boolean; autoAck?: boolean } = {},
  ) {}

  /**
   * Opens the session and waits for the Welcome frame (or the close that
   * refuses it); `url` reconnects through another gateway, as a client behind
   * a load balancer does when its gateway dies.
   */
  async connect(url = this.wsUrl): Promise<this> {
    this.frames = [];
    this.closeCode = undefined;
    const protocols = [this.options.json ? "chat.v1.json" : "chat.v1.proto", `bearer.${this.token}`];
    const ws = new WebSocket(url, protocols);
    this.ws = ws;
    ws.on("message", (data, isBinary) => {
      const frame = isBinary
        ? fromBinary(ServerFrameSchema, new Uint8Array(data as Buffer))
        : fromJsonString(ServerFrameSchema, String(data));
      this.onFrame(frame);
    });
    ws.on("close", (code, reason) => {
      this.closeCode = code;
      this.closeReason = String(reason);
    });
    ws.on("error", () => {});
    await waitFor(() => this.welcome() || this.closeCode !== undefined, "welcome or close");
    return this;
  }

  private onFrame(frame: ServerFrame): void {
    this.frames.push(frame);
    const got: InboxEntry[] = [];
    if (frame.kind.case === "message" && frame.kind.value.entry) got.push(frame.kind.value.entry);
    if (frame.kind.case === "syncBatch") got.push(...frame.kind.value.entries);
    for (const e of got) {
      this.received.push(e.inboxSeq);
      if (e.inboxSeq <= this.cursor) continue;
      this.entries.push(e);
      this.cursor = e.inboxSeq;
    }
    // Acks are coalesced, as a real client does, so they do not eat the frame rate.
    if (got.length > 0 && this.options.autoAck !== false && !this.ackTimer) {
      this.ackTimer = setTimeout(() => {
        this.ackTimer = undefined;
        this.sendFrame({ kind: { case: "deliveryAck", value: { inboxSeq: this.cursor } } });
      }, 50);
    }
  }

  welcome() {
    const f = this.frames.find((x) => x.kind.case === "welcome");
    return f?.kind.case === "welcome" ? f.kind.value : undefined;
  }

  sendFrame(init: MessageInitShape<typeof ClientFrameSchema>): bigint {
    const ref = this.nextRef++;
    const frame = create(ClientFrameSchema, { ref, ...init });
    this.sendRaw(this.options.json ? toJsonString(ClientFrameSchema, frame) : toBinary(ClientFrameSchema, frame));
    return ref;
  }

  sendRaw(data: Uint8Array | string): void {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(data);
  }

  /**
   * Sends a text and resolves with the ack or error frame answering it. Like a
   * real client it waits out RATE_LIMITED and sends again with the same key.
   */
  async send(
    channelId: bigint,
    text: string,
    clientMsgId = `c-${Math.random().toString(36).slice(2)}`,
    change: { editSeq?: bigint; deleteSeq?: bigint; replyToSeq?: bigint; reactSeq?: bigint } = {},
  ): Promise<ServerFrame> {
    for (;;) {
      const ref = this.sendFrame({ kind: { case: "send", value: { channelId, text, clientMsgId, ...change } } });
      const reply = await this.reply(ref);
      if (reply.kind.case === "error" && reply.kind.value.code === ErrorCode.RATE_LIMITED) {
        await waitOut(reply.kind.value.retryAfterMs);
        continue;
      }
      return reply;
    }
  }

  async reply(ref: bigint, timeoutMs = 30_000): Promise<ServerFrame> {
    return waitFor(() => this.frames.find((f) => f.ref === ref && (f.kind.case === "sendAck" || f.kind.case === "error")), `reply to ref ${ref}`, timeoutMs);
  }

  /** Hands the session a new access token; resolves with the Reauthenticated or Error frame answering it. */
  async reauthenticate(accessToken: string): Promise<ServerFrame> {
    const ref = this.sendFrame({ kind: { case: "reauthenticate", value: { accessToken } } });
    return waitFor(() => this.frames.find((f) => f.ref === ref && (f.kind.case === "reauthenticated" || f.kind.case === "error")), `reply to ref ${ref}`);
  }

  /** Edits the sender's message with that seq; resolves with the ack or error frame. */
  edit(channelId: bigint, seq: bigint, text: string, clientMsgId?: string): Promise<ServerFrame> {
    return this.send(channelId, text, clientMsgId, { editSeq: seq });
  }

  /** Deletes the message with that seq for everyone; resolves with the ack or error frame. */
  deleteMessage(channelId: bigint, seq: bigint, clientMsgId?: string): Promise<ServerFrame> {
    return this.send(channelId, "", clientMsgId, { deleteSeq: seq });
  }

  /** Reacts to the message with that seq ("" takes the reaction back); resolves with the ack or error frame. */
  react(channelId: bigint, seq: bigint, emoji: string, clientMsgId?: string): Promise<ServerFrame> {
    return this.send(channelId, emoji, clientMsgId, { reactSeq: seq });
  }

  /** Every inbox entry's message, changes (edits, deletes, reactions) included. */
  messages(): Message[] {
    return this.entries.map((e) => e.message!).filter(Boolean);
  }

  /** The channel's messages as a client shows them: changes applied to their targets, not listed. */
  shown(channelId: bigint): { seq: bigint; text: string; edited: boolean; deleted: boolean }[] {
    const out = new Map<bigint, { seq: bigint; text: string; edited: boolean; deleted: boolean }>();
    for (const m of this.messagesIn(channelId)) {
      if (m.targetSeq === 0n) {
        out.set(m.seq, { seq: m.seq, text: m.text, edited: m.editedAt !== undefined, deleted: m.deleted });
        continue;
      }
      const target = out.get(m.targetSeq);
      if (!target || m.reaction) continue;
      if (m.deleted) Object.assign(target, { text: "", deleted: true, edited: false });
      else Object.assign(target, { text: m.text, edited: true });
    }
    return [...out.values()];
  }

  /**
   * The channel's reactions as a client shows them from the changes it got,
   * by seq: "emoji:user" sorted, the user's latest reaction replacing theirs.
   */
  reactionsShown(channelId: bigint): Map<bigint, string[]> {
    const bySeq = new Map<bigint, Map<bigint, string>>();
    for (const m of this.messagesIn(channelId)) {
      if (m.targetSeq === 0n) continue;
      const users = bySeq.get(m.targetSeq) ?? new Map<bigint, string>();
      bySeq.set(m.targetSeq, users);
      if (m.deleted) users.clear();
      else if (m.reaction) {
        if (m.text === "") users.delete(m.senderUserId);
        else users.set(m.senderUserId, m.text);
      }
    }
    const out = new Map<bigint, string[]>();
    for (const [seq, users] of bySeq) if (users.size > 0) out.set(seq, [...users].map(([u, e]) => `${e}:${u}`).sort());
    return out;
  }

  messagesIn(channelId: bigint): Message[] {
    return this.messages().filter((m) => m.channelId === channelId);
  }

  errors() {
    return this.frames.flatMap((f) => (f.kind.case === "error" ? [f.kind.value] : []));
  }

  async waitForMessages(count: number, what = `${count} messages`, timeoutMs = 30_000): Promise<void> {
    await waitFor(() => this.entries.length >= count, what, timeoutMs);
  }

  async waitClosed(timeoutMs = 30_000): Promise<number> {
    return waitFor(() => this.closeCode, "the socket to close", timeoutMs);
  }

  async close(): Promise<void> {
    const ws = this.ws;
    if (!ws || ws.readyState === WebSocket.CLOSED) return;
    clearTimeout(this.ackTimer);
    ws.close(1000);
    await waitFor(() => ws.readyState === WebSocket.CLOSED, "close");
  }
}
