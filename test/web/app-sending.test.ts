import { strict as assert } from "node:assert";
import { ErrorCode } from "../../gen/es/chat/v1/types_pb.js";
import { waitFor } from "../support/wait.js";
import { FakeServer, ME, appSuite, message, type Running } from "./chat-harness.js";
import { FakeEvent, settle, type FakeElement, type ScriptedSocket } from "./fake-browser.js";

// A send the server keeps refusing as UNAVAILABLE (its storage or pipeline
// is down): it is not retried without end, the message shows as not sent
// with a way to retry, its text kept, and it goes again by itself after a
// reconnect (the session's outbox keeps unacked sends for that).
describe("web: a send the server keeps refusing as unavailable", () => {
  // The client's five tries back off for 3.75 s in all: its time runs ten times faster here.
  const { browser, start } = appSuite({ speed: 10 });
  let run: Running | undefined;
  const stops: (() => void)[] = [];
  afterEach(() => {
    for (const stop of stops.splice(0)) stop();
  });

  const sendsOf = (socket: ScriptedSocket, id: string) => socket.frames().filter((f) => f.kind.case === "send" && f.kind.value.clientMsgId === id);
  const pending = (r: Running) => r.browser.root.querySelector("[data-testid=pending-message]");
  const button = (el: FakeElement | null, label: string) => el?.querySelectorAll("button").find((b) => b.textContent === label);

  /** Sends `text` from the composer; the clientMsgId it went under. */
  function send(r: Running, text: string): string {
    r.browser.root.querySelector("[data-testid=composer]")!.value = text;
    r.browser.root.querySelector("form")!.dispatchEvent(new FakeEvent("submit"));
    const f = r.socket().frames().filter((x) => x.kind.case === "send").at(-1);
    assert.ok(f && f.kind.case === "send");
    return f.kind.value.clientMsgId;
  }

  /** From now on, every send of `id` on `socket` is answered UNAVAILABLE, as the server answers when it cannot take messages. */
  function refuse(socket: ScriptedSocket, id: string): void {
    let answered = 0;
    const t = setInterval(() => {
      const sends = sendsOf(socket, id);
      for (const f of sends.slice(answered)) {
        socket.push({ ref: f.ref, kind: { case: "error", value: { code: ErrorCode.UNAVAILABLE, message: "the message was not accepted; send it again", clientMsgId: id } } });
      }
      answered = sends.length;
    }, 5);
    stops.push(() => clearInterval(t));
  }

  /** The server takes the send: its ack, then the message back as an inbox entry. */
  function accept(r: Running, server: FakeServer, channelId: bigint, id: string, text: string): void {
    const history = server.history.get(String(channelId))!;
    const m = message(channelId, history.at(-1)!.seq + 1n, text, ME);
    Object.assign(m, { clientMsgId: id, senderDeviceId: 11n });
    history.push(m);
    r.socket().push({ kind: { case: "sendAck", value: { clientMsgId: id, channelId, messageId: m.messageId } } });
    r.deliver(m);
  }

  async function openChat(server: FakeServer, channelId: bigint): Promise<Running> {
    server.addChat(channelId, {}, 3);
    run = await start(server);
    const r = run;
    r.scroller().clientHeight = 400;
    browser.go(`#/c/${channelId}`);
    await waitFor(() => r.shownSeqs().length === 3, "the chat open");
    return r;
  }

  /** Sends `text` and has the server refuse it until the message shows as not sent; the clientMsgId and the socket. */
  async function sendRefused(r: Running, text: string): Promise<{ id: string; socket: ScriptedSocket }> {
    const id = send(r, text);
    const socket = r.socket();
    refuse(socket, id);
    await waitFor(() => pending(r)?.dataset.state === "failed", "the message shown as not sent", 15_000);
    return { id, socket };
  }

  it("shows the message as not sent, with its text and a way to retry, and stops sending it on that connection", async () => {
    const server = new FakeServer();
    const r = await openChat(server, 95n);
    // The page's timers from the send on, kept track of: a try planned before it showed as not sent is one of them.
    const page = globalThis.window as unknown as { setTimeout: typeof setTimeout; clearTimeout: typeof clearTimeout };
    const { setTimeout: pageSetTimeout, clearTimeout: pageClearTimeout } = page;
    const planned = new Set<unknown>();
    page.setTimeout = ((f: () => void, ms?: number) => {
      const id = pageSetTimeout(() => (planned.delete(id), f()), ms);
      planned.add(id);
      return id;
    }) as typeof setTimeout;
    page.clearTimeout = ((id: NodeJS.Timeout) => (planned.delete(id), pageClearTimeout(id))) as typeof clearTimeout;
    try {
      const { id, socket } = await sendRefused(r, "hello while the server is down");
      const plannedBefore = [...planned];

      const el = pending(r)!;
      assert.match(el.textContent, /hello while the server is down/);
      assert.match(el.textContent, /Not sent/);
      assert.ok(button(el, "Retry"), "a way to retry");
      assert.ok(button(el, "Discard"), "a way to give up");
      const tries = sendsOf(socket, id).length;
      assert.ok(tries <= 6, `sent ${tries} times`);
      // Past every try planned before it showed as not sent: a sixth would be one of them.
      await waitFor(() => plannedBefore.every((t) => !planned.has(t)), "every timer the page had planned to have run", 15_000);
      assert.equal(sendsOf(socket, id).length, tries, "sent again and again on the same connection");
      assert.equal(pending(r)?.dataset.state, "failed");
    } finally {
      page.setTimeout = pageSetTimeout;
      page.clearTimeout = pageClearTimeout;
    }
  });

  it("sends it again by itself after a reconnect, and shows it sent once taken", async () => {
    const server = new FakeServer();
    const r = await openChat(server, 96n);
    const { id } = await sendRefused(r, "kept for the reconnect");

    const socket = await r.reconnect();
    await waitFor(() => sendsOf(socket, id).length === 1, "the send, again on the new connection");
    assert.equal(pending(r)?.dataset.state, "sending");
    accept(r, server, 96n, id, "kept for the reconnect");
    await settle();
    assert.equal(pending(r), null);
    assert.deepEqual(r.shownSeqs(), [1n, 2n, 3n, 4n]);
  });

  it("asks before the page is closed or reloaded while a send is not taken (only this page has it), and not once it is, nor after Discard", async () => {
    const server = new FakeServer();
    const r = await openChat(server, 94n);
    const unload = () => (globalThis as unknown as { window: { dispatchEvent(ev: FakeEvent): boolean } }).window.dispatchEvent(new FakeEvent("beforeunload"));
    assert.equal(unload(), true, "nothing to lose: the page goes without asking");

    const id = send(r, "not taken yet");
    assert.equal(unload(), false, "a send on its way: the browser asks first");
    accept(r, server, 94n, id, "not taken yet");
    await settle();
    assert.equal(unload(), true, "taken: nothing to lose");

    await sendRefused(r, "refused for now");
    assert.equal(unload(), false, "shown as not sent, but kept to go again: the browser asks");
    button(pending(r), "Discard")!.click();
    assert.equal(unload(), true, "given up: nothing to lose");
  });

  it("sends it again at once when Retry is clicked", async () => {
    const server = new FakeServer();
    const r = await openChat(server, 97n);
    const { id, socket } = await sendRefused(r, "try me again");
    for (const stop of stops.splice(0)) stop(); // the server takes messages again

    const tries = sendsOf(socket, id).length;
    button(pending(r), "Retry")!.click();
    assert.equal(sendsOf(socket, id).length, tries + 1, "sent again");
    assert.equal(pending(r)?.dataset.state, "sending");
    accept(r, server, 97n, id, "try me again");
    await settle();
    assert.equal(pending(r), null);
  });

  it("gives up an edit the server keeps refusing, saying so, and shows the message as it was", async () => {
    const server = new FakeServer();
    const r = await openChat(server, 99n);
    const mine = message(99n, 4n, "before the edit", ME);
    server.history.get("99")!.push(mine);
    r.deliver(mine);
    await waitFor(() => r.shownSeqs().length === 4, "my message");
    const shown = () => r.browser.root.querySelector('[data-testid=message][data-seq="4"]');
    shown()!.querySelector("[data-testid=edit-message]")!.click();
    const id = send(r, "after the edit");
    const socket = r.socket();
    refuse(socket, id);
    const toast = r.browser.root.querySelector("[data-testid=toast]")!;
    await waitFor(() => !toast.hidden && /Could not edit the message/.test(toast.textContent), "the edit said to have failed", 15_000);
    assert.equal(shown()?.querySelector("[data-testid=message-text]")?.textContent, "before the edit");
    assert.equal(shown()?.querySelector("[data-testid=message-saving]"), null, "still shown as saving");

    const again = await r.reconnect();
    await settle();
    assert.equal(sendsOf(again, id).length, 0, "the edit given up went again");
  });

  it("forgets it when discarded: the reconnect does not send it", async () => {
    const server = new FakeServer();
    const r = await openChat(server, 98n);
    const { id } = await sendRefused(r, "never mind");

    button(pending(r), "Discard")!.click();
    assert.equal(pending(r), null);
    const socket = await r.reconnect();
    await settle();
    assert.equal(sendsOf(socket, id).length, 0);
  });
});
