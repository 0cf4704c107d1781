import { utf8BytesAtMost, type StoredMessage } from "../model/types.js";

/**
 * A page of messages or inbox entries stops at about this many bytes of text
 * (utf8BytesAtMost), whatever number was asked: a page of 1,000 of the
 * longest texts would be hundreds of megabytes in one frame or response,
 * past what a device, a gateway's stream or an api process should hold.
 */
export const PAGE_TEXT_BYTES = 1024 * 1024;

/** The longest prefix of `items` (at least one) whose texts fit in `budget` bytes. */
export function withinTextBytes<T>(items: T[], messageOf: (item: T) => StoredMessage, budget = PAGE_TEXT_BYTES): T[] {
  const over = overBudgetAt(items, messageOf, budget);
  return over < 0 ? items : items.slice(0, over);
}

/**
 * Stops a store read given a text budget (`Inbox.readAfter`,
 * `MessageLog.page`) once it holds what withinTextBytes will keep and the
 * item after that: the extra item tells the caller that more follow, and
 * nothing further is read, so a read costs what it returns, not its limit.
 * `add` takes each text in read order and answers true once the read may stop.
 */
export class TextBudget {
  private bytes = 0;
  private items = 0;

  /** `budget` undefined: the read goes on to its limit. */
  constructor(private readonly budget: number | undefined) {}

  add(text: string): boolean {
    if (this.budget === undefined) return false;
    this.bytes += utf8BytesAtMost(text);
    // The first item is kept whatever its size, as withinTextBytes keeps it.
    return ++this.items > 1 && this.bytes > this.budget;
  }
}

/** The prefix of a full read that a read stopped by TextBudget returns: for an adapter that can only trim what it read. */
export function throughTextBytes<T>(items: T[], messageOf: (item: T) => StoredMessage, budget: number | undefined): T[] {
  const over = overBudgetAt(items, messageOf, budget);
  return over < 0 ? items : items.slice(0, over + 1);
}

/** The first item that takes the texts past `budget` (never the first of all), -1 if none does. */
function overBudgetAt<T>(items: T[], messageOf: (item: T) => StoredMessage, budget: number | undefined): number {
  const b = new TextBudget(budget);
  return items.findIndex((item) => b.add(messageOf(item).text));
}
