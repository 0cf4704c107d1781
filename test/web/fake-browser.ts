import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { ClientFrameSchema, ServerFrameSchema } from "../../gen/es/chat/v1/session_pb.js";

/**
 * Just enough of a browser to run the web client's ChatApp in Node: a DOM
 * that the client's own builder (web/src/dom.ts) and views can render into
 * and tests can query with simple selectors, the window, document, location
 * and storage globals, and a WebSocket the test scripts. Layout is faked: a
 * message line is 40 px high, so a scroller knows where its bottom is.
 */

type Listener = (ev: FakeEvent) => void;

export class FakeEvent {
  defaultPrevented = false;
  target: unknown;
  constructor(
    readonly type: string,
    init: Record<string, unknown> = {},
  ) {
    Object.assign(this, init);
  }
  preventDefault(): void {
    this.defaultPrevented = true;
  }
}

class Emitter {
  private readonly listeners = new Map<string, Set<Listener>>();
  addEventListener(type: string, fn: Listener): void {
    if (!this.listeners.has(type)) this.listeners.set(type, new Set());
    this.listeners.get(type)!.add(fn);
  }
  removeEventListener(type: string, fn: Listener): void {
    this.listeners.get(type)?.delete(fn);
  }
  dispatchEvent(ev: FakeEvent): boolean {
    ev.target ??= this;
    for (const fn of [...(this.listeners.get(ev.type) ?? [])]) fn(ev);
    return !ev.defaultPrevented;
  }
}

class FakeNode extends Emitter {
  parentNode: FakeElement | null = null;
  /** Times it was taken out of its parent (moved, too): a click pressed on it before is lost then. */
  takenOut = 0;
  get textContent(): string {
    return "";
  }
  remove(): void {
    this.parentNode?.removeChild(this);
  }
  replaceWith(other: FakeNode): void {
    const parent = this.parentNode;
    if (!parent) return;
    other.remove();
    parent.childNodes[parent.childNodes.indexOf(this)] = other;
    other.parentNode = parent;
    this.parentNode = null;
    this.takenOut++;
  }
}

class FakeText extends FakeNode {
  constructor(public data: string) {
    super();
  }
  override get textContent(): string {
    return this.data;
  }
}

const kebab = (s: string) => s.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

/** A line of the message list, as tall as the fake layout makes it. */
const LINE_PX = 40;

export class FakeElement extends FakeNode {
  readonly childNodes: FakeNode[] = [];
  readonly attributes = new Map<string, string>();
  readonly style = { height: "", setProperty() {} };
  value = "";
  clientHeight = 0;
  private top = 0;
  readonly dataset: Record<string, string | undefined>;
  constructor(readonly tagName: string) {
    super();
    this.dataset = new Proxy({} as Record<string, string | undefined>, {
      get: (_t, k) => (typeof k === "string" ? this.getAttribute(`data-${kebab(k)}`) ?? undefined : undefined),
      set: (_t, k, v) => {
        this.setAttribute(`data-${kebab(String(k))}`, String(v));
        return true;
      },
      deleteProperty: (_t, k) => {
        this.attributes.delete(`data-${kebab(String(k))}`);
        return true;
      },
    });
  }
  setAttribute(name: string, value: string): void {
    this.attributes.set(name, String(value));
  }
  getAttribute(name: string): string | null {
    return this.attributes.get(name) ?? null;
  }
  removeAttribute(name: string): void {
    this.attributes.delete(name);
  }
  hasAttribute(name: string): boolean {
    return this.attributes.has(name);
  }
  private flag(name: string, on: boolean): void {
    if (on) this.attributes.set(name, "");
    else this.attributes.delete(name);
  }
  get hidden(): boolean {
    return this.hasAttribute("hidden");
  }
  set hidden(v: boolean) {
    this.flag("hidden", v);
  }
  get disabled(): boolean {
    return this.hasAttribute("disabled");
  }
  set disabled(v: boolean) {
    this.flag("disabled", v);
  }
  get title(): string {
    return this.getAttribute("title") ?? "";
  }
  set title(v: string) {
    this.setAttribute("title", v);
  }
  get className(): string {
    return this.getAttribute("class") ?? "";
  }
  set className(v: string) {
    this.setAttribute("class", v);
  }
  get classList() {
    const list = () => this.className.split(/\s+/).filter(Boolean);
    const set = (names: string[]) => (this.className = names.join(" "));
    return {
      contains: (c: string) => list().includes(c),
      add: (...cs: string[]) => set([...new Set([...list(), ...cs])]),
      remove: (...cs: string[]) => set(list().filter((c) => !cs.includes(c))),
      toggle: (c: string, force?: boolean) => {
        const on = force ?? !list().includes(c);
        set(on ? [...new Set([...list(), c])] : list().filter((x) => x !== c));
        return on;
      },
    };
  }
  get firstChild(): FakeNode | null {
    return this.childNodes[0] ?? null;
  }
  get children(): FakeElement[] {
    return this.childNodes.filter((n): n is FakeElement => n instanceof FakeElement);
  }
  get childElementCount(): number {
    return this.children.length;
  }
  override get textContent(): string {
    return this.childNodes.map((n) => n.textContent).join("");
  }
  override set textContent(v: string) {
    for (const n of [...this.childNodes]) this.removeChild(n);
    if (v) this.appendChild(new FakeText(v));
  }
  appendChild<T extends FakeNode>(n: T): T {
    n.remove();
    this.childNodes.push(n);
    n.parentNode = this;
    return n;
  }
  append(...nodes: (FakeNode | string)[]): void {
    for (const n of nodes) this.appendChild(typeof n === "string" ? new FakeText(n) : n);
  }
  removeChild<T extends FakeNode>(n: T): T {
    const i = this.childNodes.indexOf(n);
    if (i >= 0) this.childNodes.splice(i, 1);
    n.parentNode = null;
    n.takenOut++;
    return n;
  }
  insertBefore<T extends FakeNode>(n: T, before: FakeNode | null): T {
    if (!before) return this.appendChild(n);
    n.remove();
    this.childNodes.splice(this.childNodes.indexOf(before), 0, n);
    n.parentNode = this;
    return n;
  }
  get firstElementChild(): FakeElement | null {
    return this.children[0] ?? null;
  }
  get lastElementChild(): FakeElement | null {
    return this.children.at(-1) ?? null;
  }
  getAttributeNames(): string[] {
    return [...this.attributes.keys()];
  }
  focus(): void {}
  blur(): void {}
  select(): void {}
  setSelectionRange(): void {}
  scrollIntoView(): void {}
  click(): void {
    this.dispatchEvent(new FakeEvent("click"));
  }
  /** A <dialog>'s: shown as a modal, until closed (which says so with a `close` event). */
  open = false;
  showModal(): void {
    this.open = true;
  }
  close(): void {
    if (!this.open) return;
    this.open = false;
    this.dispatchEvent(new FakeEvent("close"));
  }

  /** The fake layout: a message, pending message, note or day line is one line; anything else is as tall as what it holds. */
  get offsetHeight(): number {
    if (this.hidden) return 0;
    if (["message", "pending-message", "note"].includes(this.dataset.testid ?? "") || this.classList.contains("day")) return LINE_PX;
    return this.children.reduce((sum, c) => sum + c.offsetHeight, 0);
  }
  get scrollHeight(): number {
    return Math.max(this.clientHeight, this.children.reduce((sum, c) => sum + c.offsetHeight, 0));
  }
  get scrollTop(): number {
    return Math.min(this.top, Math.max(0, this.scrollHeight - this.clientHeight));
  }
  set scrollTop(v: number) {
    this.top = Math.max(0, Math.min(v, this.scrollHeight - this.clientHeight));
  }

  querySelectorAll(selector: string): FakeElement[] {
    const out: FakeElement[] = [];
    const walk = (el: FakeElement) => {
      for (const c of el.children) {
        if (c.matches(selector, this)) out.push(c);
        walk(c);
      }
    };
    walk(this);
    return out;
  }
  querySelector(selector: string): FakeElement | null {
    return this.querySelectorAll(selector)[0] ?? null;
  }
  closest(selector: string): FakeElement | null {
    for (let el: FakeElement | null = this; el; el = el.parentNode) if (el.matches(selector)) return el;
    return null;
  }
  /** Selectors of tags, classes and [attr] / [attr=value] / [attr="value"], with descendant combinators and commas. */
  matches(selector: string, scope?: FakeElement): boolean {
    return selector.split(",").some((group) => {
      const parts = group.trim().split(/\s+(?![^[]*\])/);
      if (!matchesCompound(this, parts.at(-1)!)) return false;
      let el: FakeElement | null = this.parentNode;
      for (let i = parts.length - 2; i >= 0; i--) {
        while (el && el !== scope && !matchesCompound(el, parts[i]!)) el = el.parentNode;
        if (!el || el === scope) return false;
        el = el.parentNode;
      }
      return true;
    });
  }
}

function matchesCompound(el: FakeElement, compound: string): boolean {
  const re = /([a-zA-Z][\w-]*)|\.([\w-]+)|#([\w-]+)|\[([\w-]+)(?:=(?:"([^"]*)"|'([^']*)'|([^\]]*)))?\]/g;
  let consumed = 0;
  for (const m of compound.matchAll(re)) {
    consumed += m[0].length;
    const [, tag, cls, id, attr] = m;
    const value = m[5] ?? m[6] ?? m[7];
    if (tag && el.tagName !== tag.toLowerCase()) return false;
    if (cls && !el.classList.contains(cls)) return false;
    if (id && el.getAttribute("id") !== id) return false;
    if (attr && (value === undefined ? !el.hasAttribute(attr) : el.getAttribute(attr) !== value)) return false;
  }
  if (consumed !== compound.length) throw new Error(`fake DOM: selector not understood: ${compound}`);
  return true;
}

class FakeInput extends FakeElement {}
class FakeTextArea extends FakeElement {}

class FakeDocument extends Emitter {
  title = "";
  /** Where modals go, apart from the app's root. */
  readonly body = new FakeElement("body");
  visibilityState = "visible";
  /** Elements made so far: what a redraw cost. */
  created = 0;
  createElement(tag: string): FakeElement {
    this.created++;
    if (tag === "input") return new FakeInput(tag);
    if (tag === "textarea") return new FakeTextArea(tag);
    return new FakeElement(tag);
  }
  createTextNode(text: string): FakeText {
    return new FakeText(text);
  }
}

/** A WebSocket the test plays the server of. */
export class ScriptedSocket {
  static readonly CONNECTING = 0;
  static readonly OPEN = 1;
  static readonly all: ScriptedSocket[] = [];
  readyState = 1;
  binaryType = "";
  readonly sent: Uint8Array[] = [];
  onmessage?: (ev: { data: ArrayBuffer }) => void;
  onclose?: (ev: { code: number; reason: string }) => void;
  constructor() {
    ScriptedSocket.all.push(this);
  }
  send(bytes: Uint8Array): void {
    this.sent.push(bytes);
  }
  close(): void {
    this.readyState = 3;
  }
  push(frame: MessageInitShape<typeof ServerFrameSchema>): void {
    const b = toBinary(ServerFrameSchema, create(ServerFrameSchema, frame));
    this.onmessage!({ data: b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer });
  }
  /** The connection drops, as a network failure drops it. */
  drop(): void {
    this.readyState = 3;
    this.onclose?.({ code: 1006, reason: "" });
  }
  frames() {
    return this.sent.map((b) => fromBinary(ClientFrameSchema, b));
  }
}

export interface FakeBrowser {
  document: FakeDocument;
  root: FakeElement;
  /** Sets location.hash and tells the page, as a click on a link does. */
  go(hash: string): void;
  /** A fresh page: nothing stored, no hash. */
  reset(): void;
  /** How many times faster than real time this browser's timers and monotonic clock run (1 unless asked). */
  speed: number;
  install(): void;
  uninstall(): void;
}

/** The parts of localStorage the web client uses, kept in `stored`. */
export function fakeLocalStorage(stored: Map<string, string>) {
  return {
    getItem: (k: string) => stored.get(k) ?? null,
    setItem: (k: string, v: string) => void stored.set(k, v),
    removeItem: (k: string) => void stored.delete(k),
    get length() {
      return stored.size;
    },
    key: (i: number) => [...stored.keys()][i] ?? null,
  };
}

/** Timers that do not keep the test process alive after the suites are done. */
const unref = <T>(t: T): T => {
  (t as { unref?: () => void }).unref?.();
  return t;
};

/**
 * `speed` above 1 runs the page's time that many times faster: its timers
 * (window.setTimeout, setInterval) fire after ms / speed, and its monotonic
 * clock (performance.now) advances speed ms a real one. Both together, so
 * the page sees a consistent world that only runs fast: for suites whose
 * behaviour waits on the client's own backoffs and timeouts of seconds.
 * Date.now (the wall clock, which a test may step) is left alone.
 */
export function fakeBrowser({ speed = 1 }: { speed?: number } = {}): FakeBrowser {
  const document = new FakeDocument();
  const window = new Emitter() as Emitter & Record<string, unknown>;
  const stored = new Map<string, string>();
  let hash = "";
  const location = {
    href: "http://127.0.0.1/",
    origin: "http://127.0.0.1",
    protocol: "http:",
    host: "127.0.0.1",
    get hash() {
      return hash;
    },
    set hash(v: string) {
      const next = v === "" || v.startsWith("#") ? v : `#${v}`;
      if (next === hash) return;
      hash = next;
      // As in a browser: hashchange comes after the script that set it.
      setTimeout(() => window.dispatchEvent(new FakeEvent("hashchange")), 0);
    },
  };
  const fast = (ms?: number) => (ms === undefined ? ms : ms / speed);
  Object.assign(window, {
    setTimeout: (f: () => void, ms?: number) => unref(setTimeout(f, fast(ms))),
    clearTimeout,
    setInterval: (f: () => void, ms?: number) => unref(setInterval(f, fast(ms))),
    clearInterval,
    confirm: () => true,
    location,
  });
  const globals: Record<string, unknown> = {
    window,
    document,
    location,
    navigator: {},
    localStorage: fakeLocalStorage(stored),
    WebSocket: ScriptedSocket,
    Element: FakeElement,
    HTMLElement: FakeElement,
    HTMLInputElement: FakeInput,
    HTMLTextAreaElement: FakeTextArea,
  };
  if (speed !== 1) {
    const real = performance;
    const origin = real.now();
    globals.performance = { timeOrigin: real.timeOrigin, now: () => origin + (real.now() - origin) * speed };
  }
  const root = document.createElement("div");
  const saved = new Map<string, PropertyDescriptor | undefined>();
  return {
    document,
    root,
    speed,
    go: (h) => (location.hash = h),
    reset: () => {
      stored.clear();
      hash = "";
    },
    // Defined rather than assigned: a newer Node has a navigator of its own, which comes back after.
    install: () => {
      for (const [name, value] of Object.entries(globals)) {
        saved.set(name, Object.getOwnPropertyDescriptor(globalThis, name));
        Object.defineProperty(globalThis, name, { value, configurable: true, writable: true });
      }
    },
    uninstall: () => {
      for (const [name, before] of saved) {
        if (before) Object.defineProperty(globalThis, name, before);
        else delete (globalThis as Record<string, unknown>)[name];
      }
      saved.clear();
    },
  };
}

/**
 * A press on `el`; the release that follows clicks it as a browser does: a
 * click goes to what the pressed and the released element have in common,
 * so one pressed on an element taken out of the page meanwhile (a redraw
 * that replaced it, even with one just like it) reaches none.
 */
export function press(el: FakeElement): { release(): void } {
  const chain: FakeNode[] = [];
  for (let n: FakeNode | null = el; n; n = n.parentNode) chain.push(n);
  const taken = chain.map((n) => n.takenOut);
  return {
    release: () => {
      if (chain.every((n, i) => n.takenOut === taken[i])) el.click();
    },
  };
}

/** Lets every pending promise callback and timer of 0 ms run. */
export async function settle(rounds = 20): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise((r) => setTimeout(r, 0));
}
