import { randomUUID } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import { PageDirection } from "../../../gen/es/chat/v1/messages_pb.js";
import type { Channel, Message } from "../../../gen/es/chat/v1/types_pb.js";
import { intOption, normalizeWs, seqArgument, textArgument } from "../arguments.js";
import { CliError, describe, type Session } from "../client.js";
import { backoffMs, follow, retryAfterMs } from "../follow.js";
import { unsureIfInterrupted } from "../interrupts.js";
import { json, oneLine, out, warn } from "../output.js";
import { people, printChange, printMessage } from "../print-messages.js";
import { session } from "../session.js";
import { shellWord } from "../shell.js";
import type { Values } from "../usage.js";

export async function send(args: string[], values: Values): Promise<void> {
  const [ref, ...words] = args;
  if (!ref || words.length === 0) throw new CliError('usage: chat-cli send <channel-id|@username> [--reply SEQ] <text...>   ("-" reads stdin)', 2);
  const replyToSeq = values.reply === undefined ? 0n : seqArgument(values.reply, "--reply");
  const text = await textArgument(words);
  if (!text.trim()) throw new CliError("the message is empty", 2);
  const s = session();
  const channel = await s.resolveChannel(ref);
  const res = await submit(s, { channelId: channel.channelId, text, replyToSeq }, `the message may have been sent or not; see chat-cli history ${shellWord(ref)} before sending it again`);
  if (values.json) return json({ channelId: channel.channelId, messageId: res.messageId, duplicate: res.duplicate, replyToSeq: replyToSeq === 0n ? null : replyToSeq });
  const reply = replyToSeq === 0n ? "" : ` as a reply to #${replyToSeq}`;
  out(`sent to ${await s.channelName(channel)}${reply} (channel ${channel.channelId}, message ${res.messageId})`);
}

export async function changeCommand(command: "edit" | "delete", args: string[], values: Values): Promise<void> {
  const [ref, seqArg, ...words] = args;
  const usage =
    command === "edit" ? 'usage: chat-cli edit <channel-id|@username> <seq> <text...>   ("-" reads stdin)' : "usage: chat-cli delete <channel-id|@username> <seq>";
  if (!ref || !seqArg || (command === "edit" ? words.length === 0 : words.length > 0)) throw new CliError(usage, 2);
  const seq = seqArgument(seqArg);
  let text = "";
  if (command === "edit") {
    text = await textArgument(words);
    if (!text.trim()) throw new CliError("the new text is empty (to remove the message: chat-cli delete)", 2);
  }
  const s = session();
  const channel = await s.resolveChannel(ref);
  const res = await submit(
    s,
    { channelId: channel.channelId, text, ...(command === "edit" ? { editSeq: seq } : { deleteSeq: seq }) },
    `the ${command} may have been made or not; see chat-cli history ${shellWord(ref)}`,
  );
  if (values.json) return json({ channelId: channel.channelId, seq, messageId: res.messageId, duplicate: res.duplicate });
  out(`${command === "edit" ? "edited" : "deleted"} message #${seq} in ${await s.channelName(channel)}`);
}

export async function reactCommand(command: "react" | "unreact", args: string[], values: Values): Promise<void> {
  const [ref, seqArg, emoji, ...extra] = args;
  const usage = command === "react" ? "usage: chat-cli react <channel-id|@username> <seq> <emoji>" : "usage: chat-cli unreact <channel-id|@username> <seq>";
  if (!ref || !seqArg || extra.length > 0 || (command === "react" ? !emoji?.trim() : emoji !== undefined)) throw new CliError(usage, 2);
  const seq = seqArgument(seqArg);
  // Whether it is one emoji is the server's call (INVALID_ARGUMENT, with its reason).
  const text = command === "react" ? emoji!.trim() : "";
  const s = session();
  const channel = await s.resolveChannel(ref);
  const res = await submit(s, { channelId: channel.channelId, text, reactSeq: seq }, `the reaction${text ? "" : "'s taking back"} may have been made or not; see chat-cli history ${shellWord(ref)}`);
  if (values.json) return json({ channelId: channel.channelId, seq, emoji: text || null, messageId: res.messageId, duplicate: res.duplicate });
  const where = await s.channelName(channel);
  out(text ? `reacted ${text} to message #${seq} in ${where}` : `took back your reaction to message #${seq} in ${where}`);
}

/**
 * MessageService/SendMessage: a message (or a reply), or an edit or delete of, or a reaction to, one.
 * `unknown`: what to say when interrupted (Ctrl+C, a script's timeout) before an answer.
 */
async function submit(
  s: Session,
  req: { channelId: bigint; text: string; editSeq?: bigint; deleteSeq?: bigint; replyToSeq?: bigint; reactSeq?: bigint },
  unknown: string,
) {
  return unsureIfInterrupted(unknown, () => submitTries(s, req));
}

/** The longest wait before a send is tried again; a server asking for longer is told back at once, in its words. */
const SEND_WAIT_MAX_MS = 15_000;

async function submitTries(s: Session, req: Parameters<typeof submit>[1]) {
  // One key for every try: a retry after a lost answer is never a second message.
  const clientMsgId = `cli-${randomUUID()}`;
  for (let attempt = 1; ; attempt++) {
    try {
      return await s.api.messages.sendMessage({ clientMsgId, ...req });
    } catch (err) {
      // Past the server's request size no try gets through: it was tried 5 times over 6 s, then named in its Node words.
      if (err instanceof ConnectError && err.metadata.get("chat-error-code") === "ERROR_CODE_FRAME_TOO_LARGE") {
        const size = `${[...req.text].length} characters, ${Buffer.byteLength(req.text)} bytes as UTF-8`;
        throw new CliError(`the text is too large for the server to take (${size}); a message holds at most 99,999 characters`);
      }
      const retryable = err instanceof ConnectError && (err.code === Code.Unavailable || err.code === Code.ResourceExhausted);
      if (!retryable || attempt >= 5) throw err;
      // Jittered as follow's retries are: every CLI an overloaded server refused came back at the same 400 ms, 800 ms, ...
      const wait = Math.max(backoffMs(attempt - 1), retryAfterMs(err));
      // A spent text budget is refused for minutes: waited out four times over in silence, it looked like a hang.
      if (wait > SEND_WAIT_MAX_MS) throw err;
      if (wait >= 1_000) warn(`chat-cli: ${describe(err)}; trying again in ${Math.ceil(wait / 1000)} s`);
      await new Promise((r) => setTimeout(r, wait));
    }
  }
}

export async function history(args: string[], values: Values): Promise<void> {
  const [ref, extra] = args;
  if (!ref || extra !== undefined) throw new CliError("usage: chat-cli history <channel-id|@username> [--limit N] [--before SEQ]", 2);
  const limit = intOption(values.limit, "--limit", 50, 1, 200);
  const before = values.before === undefined ? 0n : BigInt(intOption(values.before, "--before", 0, 1, Number.MAX_SAFE_INTEGER));
  const s = session();
  const channel = await s.resolveChannel(ref);
  // Only a look: no receipt, and a mark of "unread" stays, so a script reading the chat leaves the person's list as it was on every device.
  const res = await s.api.messages.listMessages({ channelId: channel.channelId, anchorSeq: before, direction: PageDirection.BACKWARD, limit });
  const messages = [...res.messages].reverse();
  await s.usersById(messages.flatMap(people));
  for (const m of messages) await printMessage(s, m, values);
  if (!values.json) {
    if (messages.length === 0) warn(channel.clearedThroughSeq > 0n ? "(no messages since you cleared the history)" : "(no messages)");
    // With the --limit asked: the page after one of 5 was 50.
    else if (res.hasMore) warn(`(older messages: chat-cli history ${ref} --before ${messages[0]!.seq}${values.limit === undefined ? "" : ` --limit ${limit}`})`);
  }
}

export async function search(args: string[], values: Values): Promise<void> {
  const [ref, ...words] = args;
  if (!ref || words.length === 0) throw new CliError("usage: chat-cli search <channel-id|@username> <words...> [--limit N] [--before SEQ]", 2);
  const limit = intOption(values.limit, "--limit", 20, 1, 100);
  const beforeSeq = values.before === undefined ? 0n : BigInt(intOption(values.before, "--before", 0, 1, Number.MAX_SAFE_INTEGER));
  const s = session();
  const channel = await s.resolveChannel(ref);
  const res = await s.api.messages.searchMessages({ channelId: channel.channelId, query: words.join(" "), beforeSeq, limit });
  await s.usersById(res.messages.flatMap(people));
  for (const m of res.messages) await printMessage(s, m, values);
  const next = res.nextBeforeSeq;
  // --before ahead of the words: one that starts with "-" was typed after "--", which ends the options.
  const dashed = words.some((w) => w.startsWith("-")) ? ["--"] : [];
  const options = [...(values.limit === undefined ? [] : ["--limit", String(limit)]), ...(values.json ? ["--json"] : [])];
  const older = `chat-cli search ${[ref, "--before", String(next), ...options, ...dashed, ...words].map(shellWord).join(" ")}`;
  // On stderr with --json too: a script that got no line could not tell "none" from "none yet".
  if (next === 0n) {
    if (res.messages.length === 0 && !values.json) warn("(no matches)");
  } else if (res.messages.length === 0) {
    // The server stops at its scan bound: nothing here is "no matches" while older messages are still unsearched.
    const upTo = beforeSeq > 0n ? `#${next} to #${beforeSeq - 1n}` : `#${next} and newer`;
    warn(`(no matches in messages ${upTo}; older messages are not searched yet: ${older})`);
  } else {
    warn(`(search older messages: ${older})`);
  }
}

export async function followCommand(args: string[], values: Values): Promise<void> {
  const [ref, extra] = args;
  if (!ref || extra !== undefined) throw new CliError("usage: chat-cli follow <channel-id|@username> [--last N]", 2);
  const last = intOption(values.last, "--last", 10, 0, 200);
  // Checked before the history is printed: one refused after it read as a failure of following itself.
  const ws = values.ws !== undefined ? normalizeWs(values.ws, "--ws") : normalizeWs(process.env.CHAT_WS_URL, "CHAT_WS_URL");
  const s = session();
  const channel = await s.resolveChannel(ref);
  // Like history, only a look: what it prints stays unread, and so does a chat marked unread.
  // The last few messages first; then everything after them, live.
  let afterSeq = channel.lastSeq;
  let shown: Message[] = [];
  // On this machine's clock: reactions from before the history was read are in it already.
  const shownAtMs = Date.now();
  if (last > 0) {
    const res = await s.api.messages.listMessages({ channelId: channel.channelId, anchorSeq: 0n, direction: PageDirection.BACKWARD, limit: last });
    shown = [...res.messages].reverse();
    await s.usersById(shown.flatMap(people));
    for (const m of shown) await printMessage(s, m, values);
    // Nothing shown may mean all of it is cleared: the inbox still replays what the clear covers.
    afterSeq = shown.at(-1)?.seq ?? channel.clearedThroughSeq;
  }

  const stop = new AbortController();
  const onSignal = () => stop.abort();
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  let announced = false;
  try {
    await follow(s, {
      wsUrl: ws,
      channelId: channel.channelId,
      afterSeq,
      shown,
      shownAtMs,
      signal: stop.signal,
      print: (m) => printMessage(s, m, values),
      // A change to a message you cleared has nothing to show it on.
      printChange: async (ch) => {
        if (ch.targetSeq > channel.clearedThroughSeq) await printChange(s, ch, values);
      },
      status: (line) => {
        if (line === "connected") {
          if (!announced) warn(`following ${oneLine(channelLabel(channel), 60)}; Ctrl+C to stop`);
          else warn("reconnected");
          announced = true;
        } else if (line === "moved") {
          // Said "reconnected" before, as if the connection had been lost, where the gateways keep it through a chat server's failover.
          warn("the session moved to another chat server, on the same connection; following on");
        } else {
          warn(line);
        }
      },
    });
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}

function channelLabel(c: Channel): string {
  return c.title ? `"${c.title}" (channel ${c.channelId})` : `channel ${c.channelId}`;
}
