import { strict as assert } from "node:assert";
import { AsyncLocalStorage } from "node:async_hooks";
import WebSocket from "ws";
import type { InboxEntry } from "../../gen/es/chat/v1/types_pb.js";
import { addDevice, apiClients, signUp } from "../support/api.js";
import { removeDataDir, startChatd, type ChatdProcess } from "../support/chatd.js";
import { waitFor } from "../support/wait.js";

// The web client's realtime session and Auth in Node, against a real chatd
// whose access tokens last 10 s: ws stands in for the browser's WebSocket.
// Each test waits out a token's life, so the two run at once, each as a page
// of its own: its localStorage (where Auth keeps the device's tokens) is the
// one of the async context it runs in.
const pages = new AsyncLocalStorage<Map<string, string>>();
const page = (): Map<string, string> => {
  const stored = pages.getStore();
  if (!stored) throw new Error("localStorage used outside a test's page");
  return stored;
};
const browserGlobals = (origin: string): Record<string, unknown> => ({
  localStorage: { getItem: (k: string) => page().get(k) ?? null, setItem: (k: string, v: string) => void page().set(k, v), removeItem: (k: string) => void page().delete(k) },
  window: { addEventListener() {}, removeEventListener() {}, setTimeout, clearTimeout, setInterval, clearInterval },
  location: { href: `${origin}/`, origin, protocol: "http:" },
  // No Web Locks: a refresh runs at once.
  navigator: {},
  WebSocket,
});

/** What a test run in the background came to: its error, if it failed. */
const outcome = (run: () => Promise<void>): Promise<unknown> =>
  pages.run(new Map(), run).then(
    () => undefined,
    (err: unknown) => err ?? new Error("failed"),
  );

describe("web: the realtime session with access tokens of 10 s", function () {
  this.timeout(60_000);
  let chatd: ChatdProcess;
  const saved = new Map<string, PropertyDescriptor | undefined>();
  let RealtimeSession: typeof import("../../web/src/session.js").RealtimeSession;
  let Auth: typeof import("../../web/src/auth.js").Auth;
  /** Both tests, started together once chatd is up. */
  let runs: { expiry?: Promise<unknown>; halfWay?: Promise<unknown> } = {};

  before(async () => {
    chatd = await startChatd({ env: { CHAT_ACCESS_TOKEN_TTL_S: "10" } });
    // Defined rather than assigned: a newer Node has a navigator of its own, which comes back after.
    for (const [name, value] of Object.entries(browserGlobals(chatd.httpUrl))) {
      saved.set(name, Object.getOwnPropertyDescriptor(globalThis, name));
      Object.defineProperty(globalThis, name, { value, configurable: true, writable: true });
    }
    ({ RealtimeSession } = await import("../../web/src/session.js"));
    ({ Auth } = await import("../../web/src/auth.js"));
    runs = { expiry: outcome(refreshedBeforeExpiry), halfWay: outcome(refreshedHalfWay) };
  });
  after(async () => {
    await Promise.all(Object.values(runs));
    for (const [name, before] of saved) {
      if (before) Object.defineProperty(globalThis, name, before);
      else delete (globalThis as Record<string, unknown>)[name];
    }
    await chatd?.stop();
    if (chatd) removeDataDir(chatd.dataDir);
  });

  async function refreshedBeforeExpiry(): Promise<void> {
    const peer = await signUp(chatd.httpUrl, "peer");
    const me = await signUp(chatd.httpUrl, "web");
    const auth = new Auth();
    const login = await apiClients(chatd.httpUrl).auth.login({ username: me.username, password: me.password, device: { name: "web" } });
    const first = auth.store(login.credentials!);
    const { channelId } = (await peer.api.channels.openDirect({ userId: me.userId })).channel!;

    const texts: string[] = [];
    const states: string[] = [];
    const handlers = new Proxy(
      {},
      {
        get: (_t, name) => {
          if (name === "entries") return (es: InboxEntry[]) => texts.push(...es.map((e) => e.message?.text ?? ""));
          if (name === "state") return (s: string, detail?: string) => states.push(detail ? `${s} (${detail})` : s);
          return () => undefined;
        },
      },
    );
    const session = new RealtimeSession(auth, handlers as never, chatd.wsUrl);
    try {
      session.start();
      await waitFor(() => session.state === "open", "the session open");
      // Past the server's expiry sweep, which closes a socket whose token expired (4002) within a second.
      await waitFor(() => Date.now() > first.accessExpiresAtMs + 1500, "the first token's expiry", 20_000, 100);

      // The peer's token ran out too: it signs in anew.
      const { token } = await addDevice(chatd.httpUrl, peer);
      await apiClients(chatd.httpUrl, token).messages.sendMessage({ channelId, clientMsgId: "w1", text: "past the expiry" });
      await waitFor(() => texts.includes("past the expiry"), "the message, live");
      assert.notEqual(auth.current?.accessToken, first.accessToken, "the access token was refreshed");
      assert.deepEqual(states, ["connecting", "open"], "the socket was closed");
      assert.equal(session.sessions, 1);
    } finally {
      session.stop();
    }
  }

  async function refreshedHalfWay(): Promise<void> {
    const me = await signUp(chatd.httpUrl, "web");
    const auth = new Auth();
    const login = await apiClients(chatd.httpUrl).auth.login({ username: me.username, password: me.password, device: { name: "web" } });
    const first = auth.store(login.credentials!);
    let refreshes = 0;
    const refresh = auth.refresh.bind(auth);
    auth.refresh = (force) => (refreshes++, refresh(force));
    const session = new RealtimeSession(auth, new Proxy({}, { get: () => () => undefined }) as never, chatd.wsUrl);
    try {
      session.start();
      await waitFor(() => session.state === "open", "the session open");
      await waitFor(() => Date.now() > first.accessExpiresAtMs + 1500, "the first token's expiry", 20_000, 100);
      // Each token is refreshed once, at the earliest half way through its life: two in these 11.5 s.
      assert.ok(refreshes >= 1 && refreshes <= 3, `${refreshes} refreshes in the first token's life and a bit`);
      assert.equal(session.sessions, 1);
    } finally {
      session.stop();
    }
  }

  it("hands the open socket a fresh token before its token expires, and goes on receiving in the same session past that expiry", async () => {
    const err = await runs.expiry;
    if (err) throw err;
  });

  it("hands over a fresh token once a good part of the token's life is gone, not every second while the token is shorter than a minute", async () => {
    const err = await runs.halfWay;
    if (err) throw err;
  });
});
