import { characters } from "./format.js";

/**
 * A tiny element builder. Text always goes in as text nodes, never as HTML,
 * so nothing a user typed can become markup.
 */
export type Child = Node | string | number | false | null | undefined | Child[];
type Attrs = Record<string, string | number | boolean | EventListener | null | undefined>;

export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key === "class") {
      el.className = String(value);
    } else if (value === true) {
      el.setAttribute(key, "");
    } else if (key === "value" && (el instanceof HTMLInputElement || el instanceof HTMLTextAreaElement)) {
      el.value = String(value);
    } else {
      el.setAttribute(key, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el: Node, children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
  }
}

/** Where one embedding (LRE, RLE, LRO, RLO) or isolate (LRI, RLI, FSI) starts, and the two characters that end them. */
const EMBED = /[\u202a\u202b\u202d\u202e]/;
const ISOLATE = /[\u2066\u2067\u2068]/;
const PDF = "\u202c";
const PDI = "\u2069";

/**
 * `text` with its bidi controls balanced: each embedding, override or
 * isolate it opens is closed at its end, and a closer that closes nothing of
 * its own is dropped. A sender's U+202E then stops at the end of their name
 * or message; and an isolate around it (`<bdi>`, `dir`, which Chromium makes
 * FSI ... PDI in the line's text) cannot be ended early by a U+2069 in it,
 * after which an override in the rest reordered the line to its end.
 */
export function balanced(text: string): string {
  if (!/[\u202a-\u202e\u2066-\u2069]/.test(text)) return text;
  const open: string[] = [];
  let out = "";
  for (const c of text) {
    if (EMBED.test(c) || ISOLATE.test(c)) open.push(c);
    else if (c === PDF) {
      // Closes the innermost embedding, never across an isolate (as the bidi algorithm has it).
      if (open.length === 0 || !EMBED.test(open.at(-1)!)) continue;
      open.pop();
    } else if (c === PDI) {
      // Closes the innermost isolate and every embedding inside it.
      let at = open.length - 1;
      while (at >= 0 && !ISOLATE.test(open[at]!)) at--;
      if (at < 0) continue;
      open.length = at;
    }
    out += c;
  }
  for (let i = open.length - 1; i >= 0; i--) out += ISOLATE.test(open[i]!) ? PDI : PDF;
  return out;
}

/** `text` as an isolate of its own inside a longer string (a tooltip, a confirm): FSI, the text balanced, PDI. */
export function isolate(text: string): string {
  return `\u2068${balanced(text)}${PDI}`;
}

/** A right-to-left letter, or a bidi control (LRM, RLM and ALM aside: they reorder nothing past themselves). */
const BIDI = /[\u0590-\u08ff\ufb1d-\ufdff\ufe70-\ufefc\u202a-\u202e\u2066-\u2069]|[\u{10800}-\u{10fff}\u{1e800}-\u{1efff}]/u;

/** `isolate(text)` where `text` could reorder what is around it, else `text` as it is (a string searched or compared stays plain). */
export function isolateIfBidi(text: string): string {
  return BIDI.test(text) ? isolate(text) : text;
}

/**
 * Text someone else chose (a name, a title, a message) as an element of its
 * own, isolated from what is around it and its direction its own: `<bdi>`
 * inline, or `dir="auto"` on the given block.
 */
export function bidi<K extends keyof HTMLElementTagNameMap = "bdi">(text: string, tag?: K, attrs: Attrs = {}): HTMLElementTagNameMap[K] {
  return h((tag ?? "bdi") as K, { dir: "auto", ...attrs }, balanced(text));
}

export function clear(el: Element): void {
  while (el.firstChild) el.removeChild(el.firstChild);
}

export function replaceChildren(el: Element, ...children: Child[]): void {
  clear(el);
  append(el, children);
}

/**
 * Makes `parent`'s children `children`, in order, moving only those out of
 * place: one a redraw leaves where it was is never taken out, so a click
 * whose press landed on it before the redraw still reaches it (a browser
 * sends the click to what the press and the release have in common).
 */
export function placeChildren(parent: Element, children: Element[]): void {
  children.forEach((c, i) => {
    const at = parent.children[i] ?? null;
    if (at !== c) parent.insertBefore(c, at);
  });
  while (parent.children.length > children.length) parent.lastElementChild!.remove();
}

/**
 * Makes `el` show what `fresh` shows (its attributes and children), keeping
 * `el` itself and its listeners, as `placeChildren` wants.
 */
export function morph(el: Element, fresh: Element): void {
  for (const name of el.getAttributeNames()) if (!fresh.hasAttribute(name)) el.removeAttribute(name);
  for (const name of fresh.getAttributeNames()) el.setAttribute(name, fresh.getAttribute(name)!);
  replaceChildren(el, [...fresh.childNodes]);
}

/** A modal shown: `close` closes it from outside, if it is still open; `closed` settles once it closed, whichever way. */
export interface Modal {
  close(): void;
  readonly closed: Promise<void>;
}

/**
 * Shows `dialog` as a modal, taking it out of the page when it closes (then
 * `closed` runs).
 */
export function showModal(dialog: HTMLDialogElement, closed?: () => void): Modal {
  let done!: () => void;
  const settled = new Promise<void>((resolve) => (done = resolve));
  dialog.addEventListener("close", () => {
    dialog.remove();
    closed?.();
    done();
  });
  document.body.append(dialog);
  dialog.showModal();
  return { close: () => dialog.open && dialog.close(), closed: settled };
}

/** A stable hue for a user or channel id, for avatars. */
function hue(seed: string): number {
  let x = 0;
  for (let i = 0; i < seed.length; i++) x = (x * 31 + seed.charCodeAt(i)) >>> 0;
  return x % 360;
}

/** A character that draws something: not a format or control character, a mark alone, a space or another that shows nothing. */
const SHOWS = /[^\p{Cc}\p{Cf}\p{M}\p{Z}\p{Default_Ignorable_Code_Point}\u2800]/u;

export function avatar(name: string, seed: string, extraClass = ""): HTMLElement {
  const letters = name
    .split(/[\s._-]+/)
    // A whole first character: the first code point of a flag is a lone letter in a box, of an accented letter maybe the bare letter.
    // The first that shows: a name may start with a right-to-left mark or a zero-width space, an initial of nothing.
    .map((w) => characters(w).find((c) => SHOWS.test(c)))
    .filter((c) => c !== undefined)
    .slice(0, 2)
    .map((c) => c.toUpperCase())
    .join("");
  const el = h("span", { class: `avatar ${extraClass}`.trim(), "aria-hidden": "true" }, letters || "?");
  el.style.setProperty("--avatar-hue", String(hue(seed)));
  return el;
}
