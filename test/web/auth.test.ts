import { strict as assert } from "node:assert";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { CredentialsSchema } from "../../gen/es/chat/v1/auth_pb.js";
import { waitFor } from "../support/wait.js";

// The web client's Auth in Node: localStorage and the storage event of another tab, as a browser has them.
const stored = new Map<string, string>();
const storageListeners: ((e: { key: string | null }) => void)[] = [];
const browserGlobals = {
  localStorage: { getItem: (k: string) => stored.get(k) ?? null, setItem: (k: string, v: string) => void stored.set(k, v), removeItem: (k: string) => void stored.delete(k) },
  window: { addEventListener: (type: string, f: (e: { key: string | null }) => void) => type === "storage" && storageListeners.push(f) },
  location: { origin: "http://127.0.0.1" },
  // No Web Locks: a refresh runs at once.
  navigator: {},
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

  /** Credentials as the server answers a sign-in or refresh, the n-th of device `deviceId`. */
  const issued = (n: number, deviceId = 11n) =>
    create(CredentialsSchema, { accessToken: `a${n}`, refreshToken: `r${n}`, userId: 1n, deviceId, accessTokenExpiresAt: timestampFromMs(Date.now() + 15 * 60_000) });

  /** An Auth signed in, whose refreshes are answered when the returned function is called. */
  function slowRefresh(): { auth: InstanceType<typeof Auth>; answer: (n: number) => void } {
    const auth = new Auth();
    auth.store(issued(0));
    let answer!: (v: unknown) => void;
    (auth as unknown as { client: unknown }).client = { refresh: () => new Promise((r) => (answer = r)) };
    return { auth, answer: (n) => answer({ credentials: issued(n) }) };
  }

  it("does not store a refresh's answer after another tab signed out while it was on its way", async () => {
    const { auth, answer } = slowRefresh();
    let lost = 0;
    auth.onLost(() => lost++);
    const refreshing = auth.refresh(true);
    await new Promise((r) => setImmediate(r));
    anotherTab(undefined);
    assert.equal(lost, 1);
    answer(1);
    await assert.rejects(refreshing);

    assert.equal(stored.get("chat.credentials"), undefined, "the signed-out device stored again");
    assert.equal(auth.current, undefined);
  });

  it("does not store a refresh's answer over another tab's sign-in made while it was on its way", async () => {
    const { auth, answer } = slowRefresh();
    const refreshing = auth.refresh(true);
    await new Promise((r) => setImmediate(r));
    anotherTab(credentials("2", "22"));
    answer(1);
    await refreshing;

    assert.equal(auth.current?.deviceId, "22");
  });

  it("does not sign out another tab's sign-in, made while a refresh of the device before was on its way, when that refresh is refused", async () => {
    const auth = new Auth();
    auth.store(issued(0));
    let refuse!: (err: unknown) => void;
    (auth as unknown as { client: unknown }).client = { refresh: () => new Promise((_, reject) => (refuse = reject)) };
    let lost = 0;
    auth.onLost(() => lost++);
    const refreshing = auth.refresh(true);
    await new Promise((r) => setImmediate(r));
    anotherTab(credentials("2", "22"));
    refuse(new ConnectError("the device was signed out", Code.Unauthenticated));
    await refreshing.catch(() => undefined);

    assert.equal(auth.current?.deviceId, "22", "the sign-in made in the other tab was wiped");
    assert.equal(lost, 0, "told signed out");
  });

  it("keeps the token the server issued last when two tabs refreshed the same one at once, without Web Locks (not a secure context)", async () => {
    // The server takes the second use of a refresh token, within its grace, as a retry: the token it
    // issued for the first is spent, and only the one issued last lives (internal/auth/refresh.ts).
    const signed = (n: number, iat: number) => {
      const body = Buffer.from(JSON.stringify({ sub: "1", dev: "11", iat, exp: iat + 15 * 60_000 })).toString("base64url");
      return create(CredentialsSchema, { accessToken: `${body}.sig${n}`, refreshToken: `r${n}`, userId: 1n, deviceId: 11n, accessTokenExpiresAt: timestampFromMs(iat + 15 * 60_000) });
    };
    const t = Date.now();
    for (const order of ["first issued answers first", "last issued answers first"]) {
      stored.clear();
      const tabA = new Auth();
      const tabB = new Auth();
      tabA.store(signed(0, t - 60_000));
      const answers: ((v: unknown) => void)[] = [];
      for (const tab of [tabA, tabB]) (tab as unknown as { client: unknown }).client = { refresh: () => new Promise((r) => answers.push(r)) };
      const refreshes = [tabA.refresh(true), tabB.refresh(true)];
      await waitFor(() => answers.length === 2, "both refreshes sent");
      const [answerA, answerB] = answers as [(v: unknown) => void, (v: unknown) => void];
      // Tab A's use came first (r1, spent by tab B's), tab B's second (r2, the live one).
      if (order === "first issued answers first") {
        answerA({ credentials: signed(1, t) });
        await refreshes[0];
        answerB({ credentials: signed(2, t + 5) });
      } else {
        answerB({ credentials: signed(2, t + 5) });
        await refreshes[1];
        answerA({ credentials: signed(1, t) });
      }
      await Promise.all(refreshes);
      assert.equal(tabA.current?.refreshToken, "r2", `${order}: the refresh token kept is one the server spent`);
    }
  });

  it("keeps a token's lifetime by the browser's clock when it is ahead of the server's: no refresh before every call, one near the end", async () => {
    const skewMs = 20 * 60_000;
    const realNow = Date.now;
    let localNow = realNow();
    Date.now = () => localNow;
    try {
      // Signed as the server signs them: its clock (20 minutes behind this browser's) in the payload, 15 minutes to live.
      const token = (n: number) => {
        const iat = localNow - skewMs;
        const body = Buffer.from(JSON.stringify({ kid: "k", sub: "1", dev: "11", iat, exp: iat + 15 * 60_000 })).toString("base64url");
        return create(CredentialsSchema, { accessToken: `${body}.sig${n}`, refreshToken: `r${n}`, userId: 1n, deviceId: 11n, accessTokenExpiresAt: timestampFromMs(iat + 15 * 60_000) });
      };
      let refreshes = 0;
      const auth = new Auth();
      (auth as unknown as { client: unknown }).client = { refresh: async () => ({ credentials: token(++refreshes) }) };
      auth.store(token(0));
      for (let i = 0; i < 10; i++) await auth.accessToken();
      assert.equal(refreshes, 0, "refreshed a token signed a moment ago");

      localNow += 14.5 * 60_000;
      assert.match(await auth.accessToken(), /\.sig1$/, "a token half a minute from its end refreshed first");
      assert.equal(refreshes, 1);
    } finally {
      Date.now = realNow;
    }
  });
});
