import type { NotificationRequest } from "./records.js";
import type { PushNotification } from "./port.js";

/** A notification with its preview and without: a retry picks the one the device's setting asks for by then. */
export interface NotificationVersions {
  preview: PushNotification;
  noPreview: PushNotification;
}

export const PREVIEW_CODE_POINTS = 120;

/**
 * What the user sees: sender (and group), the newest text unless previews
 * are hidden; for a reaction to the user's message, the emoji (`type`
 * "reaction", `targetSeq` the message reacted to).
 */
export function buildNotification(req: NotificationRequest, count: number, hidePreview: boolean, ttlSeconds: number): PushNotification {
  const m = req.message;
  const reaction = m.reaction === true;
  const title = req.channelTitle ? `${req.senderName} in ${req.channelTitle}` : req.senderName;
  const latest = reaction ? `Reacted ${m.text} to your message` : preview(m.text);
  let body: string;
  if (hidePreview) body = count > 1 ? `${count} new messages` : reaction ? "New reaction" : "New message";
  else body = count > 1 ? `${count} new messages, the latest: ${latest}` : latest;
  return {
    collapseKey: `c${m.channelId}`,
    title,
    body,
    ttlSeconds,
    data: {
      type: reaction ? "reaction" : "message",
      channelId: String(m.channelId),
      messageId: String(m.messageId),
      seq: String(m.seq),
      senderUserId: String(m.senderUserId),
      senderName: req.senderName,
      channelTitle: req.channelTitle,
      count: String(count),
      ...(req.mentioned ? { mentioned: "true" } : {}),
      ...(reaction ? { targetSeq: String(m.targetSeq ?? 0n) } : {}),
    },
  };
}

const graphemes = new Intl.Segmenter(undefined, { granularity: "grapheme" });

export function preview(text: string): string {
  const t = text.replace(/\s+/g, " ").trim();
  const cps = [...t];
  if (cps.length <= PREVIEW_CODE_POINTS) return t;
  // Cut where a character the reader sees ends: by code points, a flag showed as a lone letter,
  // a family as one person and a joiner, an accented letter bare. Only a first character longer
  // than the whole budget (a pile of combining marks) is cut inside.
  let kept = 0;
  let end = 0;
  for (const { segment, index } of graphemes.segment(cps.slice(0, PREVIEW_CODE_POINTS).join(""))) {
    const n = [...segment].length;
    if (kept + n > PREVIEW_CODE_POINTS - 1) break;
    kept += n;
    end = index + segment.length;
  }
  return `${end > 0 ? t.slice(0, end) : cps.slice(0, PREVIEW_CODE_POINTS - 1).join("")}…`;
}
