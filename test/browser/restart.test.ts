import assert from "node:assert/strict";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { signUp, type TestUser } from "../support/api.js";
import { removeDataDir, startChatd, type ChatdProcess } from "../support/chatd.js";
import { freePort } from "../support/ports.js";
import { buildWebClient, launchChromium, shownMessages, signUpInPage, unique, waitConnected, watchPage } from "./support.js";

/**
 * The web client across a restart of chatd (the same data, the same
 * address): the open page reconnects by itself and shows the chat as it is,
 * each message once, what was typed meanwhile sent once, without a reload.
 */
describe("web client across a chatd restart", function () {
  this.timeout(180_000);
  let chatd: ChatdProcess | undefined;
  let dataDir = "";
  let port = 0;
  let browser: Browser;
  let context: BrowserContext;
  const problems: string[] = [];

  const start = async () => {
    chatd = await startChatd({ ...(dataDir ? { dataDir } : {}), env: { CHAT_HTTP_PORT: String(port), CHAT_HEARTBEAT_INTERVAL_MS: "1000" } });
    dataDir = chatd.dataDir;
  };

  before(async function () {
    this.timeout(900_000);
    await buildWebClient();
    browser = await launchChromium();
    port = await freePort();
    await start();
  });

  after(async () => {
    await context?.close().catch(() => undefined);
    await browser?.close();
    await chatd?.stop();
    if (dataDir) removeDataDir(dataDir);
  });

  it("reconnects by itself and shows each message once, the one typed while it was down sent once", async () => {
    context = await browser.newContext({ viewport: { width: 1200, height: 800 } });
    const page: Page = watchPage(await context.newPage(), "ann", problems);
    const ann = unique("ann");
    await signUpInPage(page, chatd!.httpUrl, ann, "correct horse battery", "Ann");
    const bob: TestUser = await signUp(chatd!.httpUrl, "bob");
    const annId = (await bob.api.users.searchUsers({ query: ann, limit: 5 })).users.find((u) => u.username === ann)!.userId;
    const { channelId } = (await bob.api.channels.openDirect({ userId: annId })).channel!;
    let n = 0;
    const send = (text: string) => bob.api.messages.sendMessage({ clientMsgId: `b${n++}`, channelId, text });
    await send("before one");
    await send("before two");
    await page.locator("[data-testid=channel]").first().click();
    await page.locator("[data-testid=message]", { hasText: "before two" }).waitFor();

    await chatd!.stop();
    await page.locator('[data-testid=connection]:not([data-state="open"])').waitFor({ timeout: 15_000 });
    await page.getByTestId("composer").fill("typed while down");
    await page.getByTestId("composer").press("Enter");

    await start();
    await waitConnected(page, 60_000);
    await send("after the restart");
    await page.locator("[data-testid=message]", { hasText: "after the restart" }).waitFor({ timeout: 20_000 });
    await page.locator("[data-testid=pending-message]").first().waitFor({ state: "detached", timeout: 20_000 });
    assert.deepEqual(await shownMessages(page), ["before one", "before two", "typed while down", "after the restart"]);
    const history = (await bob.api.messages.listMessages({ channelId, limit: 50 })).messages.map((m) => m.text);
    assert.deepEqual(history.sort(), ["after the restart", "before one", "before two", "typed while down"]);
    // The browser logs each refused reconnect by itself; nothing else is expected.
    assert.deepEqual(problems.filter((p) => !/WebSocket connection to .* net::ERR_CONNECTION_REFUSED/.test(p)), []);
  });
});
