import type { User } from "../../../gen/es/chat/v1/types_pb.js";
import { replaceChildren, type Child } from "../dom.js";

/** How long typing must pause before a search goes out: one request per word typed, not per key. */
const SEARCH_PAUSE_MS = 200;

/**
 * Searches users by what is typed in `query` once the typing pauses, and
 * shows in `results` what `show` makes of the latest search's answer: an
 * answer that comes after a newer search went out is dropped, so a slow
 * reply never replaces a newer one. An empty query clears the results.
 * Returns what stops it (the dialog closed): a search due or in flight then
 * shows nothing.
 */
export function searchAsTyped(
  query: HTMLInputElement,
  results: HTMLElement,
  options: {
    search(q: string): Promise<User[]>;
    show(users: User[], q: string): Child;
    failed(err: unknown): void;
  },
): () => void {
  let latest = 0;
  let timer: number | undefined;
  query.addEventListener("input", () => {
    clearTimeout(timer);
    const q = query.value.trim();
    if (!q) return replaceChildren(results);
    timer = window.setTimeout(async () => {
      const mine = ++latest;
      try {
        const users = await options.search(q);
        if (mine === latest) replaceChildren(results, options.show(users, q));
      } catch (err) {
        if (mine === latest) options.failed(err);
      }
    }, SEARCH_PAUSE_MS);
  });
  return () => {
    clearTimeout(timer);
    latest++;
  };
}
