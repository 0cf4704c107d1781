import { strict as assert } from "node:assert";

// The web client's Auth in Node: localStorage and the storage event of another tab, as a browser has them.
const stored = new Map<string, string>();
const storageListeners: ((e: { key: string | null }) => void)[] = [];
const browserGlobals = {
  localStorage: { getItem: (k: string) => stored.get(k) ?? null, setItem: (k: string, v: string) => void stored.set(k, v), removeItem: (k: string) => void stored.delete(k) },
  window: { addEventListener: (type: string, f: (e: { key: string | null }) => void) => type === "storage" && storageListeners.push(f) },
  location: { origin: "http://127.0.0.1" },
};
let Auth: typeof import("../../web/src/auth.js").Auth;

const credentials = (userId: string, deviceId: string) =>
  JSON.stringify({ accessToken: `token-${deviceId}`, accessExpiresAtMs: Date.now() + 900_000, accessIssuedAtMs: Date.now(), refreshToken: "r", userId, deviceId, username: userId, displayName: userId });
/** What another tab does to the shared storage, and the event this tab gets for it. */
const anotherTab = (value: string | undefined) => {
  if (value === undefined) stored.delete("chat.credentials");
  else stored.set("chat.credentials", value);
  for (const l of storageListeners) l({ key: "chat.credentials" });
};

describe("web: one signed-in device for every tab", () => {
  // Only while these tests run: the other suites in this process must not think they are in a browser.
  before(async () => {
    Object.assign(globalThis, browserGlobals);
    ({ Auth } = await import("../../web/src/auth.js"));
  });
  after(() => {
    for (const name of Object.keys(browserGlobals)) delete (globalThis as Record<string, unknown>)[name];
  });
  afterEach(() => {
    stored.clear();
    storageListeners.length = 0;
  });

  it("follows another tab signing in as someone else, and signing out", () => {
    stored.set("chat.credentials", credentials("1", "11"));
    const auth = new Auth();
    const heard: string[] = [];
    auth.onSwitched(() => heard.push("switched"));
    auth.onLost(() => heard.push("lost"));
    anotherTab(credentials("1", "11").replace("token-11", "token-11b")); // a refresh there: the same device
    assert.deepEqual(heard, []);
    anotherTab(credentials("2", "22"));
    assert.deepEqual(heard, ["switched"]);
    anotherTab(undefined);
    assert.deepEqual(heard, ["switched", "lost"]);
  });

  it("follows a sign-in made in another tab while this one shows the sign-in screen", () => {
    const auth = new Auth();
    let switched = 0;
    auth.onSwitched(() => switched++);
    anotherTab(credentials("3", "33"));
    assert.equal(switched, 1);
  });
});
