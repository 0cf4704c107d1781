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
  let bytes = 0;
  for (let i = 0; i < items.length; i++) {
    bytes += utf8BytesAtMost(messageOf(items[i]!).text);
    if (bytes > budget && i > 0) return items.slice(0, i);
  }
  return items;
}
