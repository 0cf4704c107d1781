/**
 * The budget of text bytes (UTF-8) an account may have stored: sends,
 * replies, edits and reactions, on a chat server over all its sessions
 * there, and on an api process over its SendMessage calls. The frame and
 * call rates alone let one account send 50 texts of up to 400 KB a second,
 * each copied to up to a hundred members' inboxes and devices.
 *
 * The burst holds two texts of the largest size (100,000 code points of up
 * to 4 bytes) and a few more: a person pasting a long text two or three times
 * never meets it. The rate is thousands of times what anyone types or pastes
 * and what a busy bot writes, and holds what one account makes the backend
 * write to a hundred inboxes at tens of MB a second, not gigabytes.
 */
export const TEXT_BURST_BYTES = 1024 * 1024;
export const TEXT_BYTES_PER_SEC = 256 * 1024;

/** What a text costs: its UTF-8 bytes, and at least one (an empty edit or delete is still a write). */
export function textCost(text: string): number {
  return Math.max(1, Buffer.byteLength(text, "utf8"));
}
