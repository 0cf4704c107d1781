import type { EnvReader } from "../config/env.js";
import { MAX_TEXT_CODE_POINTS } from "../model/types.js";

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
 * CHAT_TEXT_BURST_BYTES and CHAT_TEXT_BYTES_PER_SEC tune both (README: "Configuration").
 */
export const TEXT_BURST_BYTES = 1024 * 1024;
export const TEXT_BYTES_PER_SEC = 256 * 1024;

export interface TextBudget {
  /** Text bytes an account may have stored per second, sustained. */
  textBytesPerSecond: number;
  textBurstBytes: number;
}

export const DEFAULT_TEXT_BUDGET: TextBudget = { textBytesPerSecond: TEXT_BYTES_PER_SEC, textBurstBytes: TEXT_BURST_BYTES };

/** The UTF-8 bytes of the longest text a frame or request of `maxFrameBytes` can carry. */
export function largestTextBytes(maxFrameBytes: number): number {
  return Math.min((MAX_TEXT_CODE_POINTS - 1) * 4, maxFrameBytes);
}

/**
 * CHAT_TEXT_BURST_BYTES and CHAT_TEXT_BYTES_PER_SEC. The burst must hold the
 * largest text a message can carry (by CHAT_MAX_FRAME_BYTES, read as
 * `maxFrameBytes`): a smaller one would refuse no text for its size, only
 * charge every longer text less than it is.
 */
export function readTextBudget(r: EnvReader, maxFrameBytes: number): TextBudget {
  const budget: TextBudget = {
    textBurstBytes: r.int("CHAT_TEXT_BURST_BYTES", 1024 * 1024, 1, 1024 * 1024 * 1024),
    textBytesPerSecond: r.int("CHAT_TEXT_BYTES_PER_SEC", 256 * 1024, 1, 1024 * 1024 * 1024),
  };
  const largest = largestTextBytes(maxFrameBytes);
  if (budget.textBurstBytes < largest) {
    r.problems.push(
      `CHAT_TEXT_BURST_BYTES=${budget.textBurstBytes}: must be at least ${largest}, the largest text a message can carry (99,999 code points of up to 4 bytes, within CHAT_MAX_FRAME_BYTES=${maxFrameBytes}), so one such text can always be sent`,
    );
  }
  return budget;
}

/** What a text costs: its UTF-8 bytes, and at least one (an empty edit or delete is still a write). */
export function textCost(text: string): number {
  return Math.max(1, Buffer.byteLength(text, "utf8"));
}
