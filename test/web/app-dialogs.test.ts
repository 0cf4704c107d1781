import { strict as assert } from "node:assert";
import { waitFor } from "../support/wait.js";
import { FakeServer, appSuite } from "./chat-harness.js";
import { settle, type FakeElement } from "./fake-browser.js";

// The app's modals (account, friends, new group, a group's invite link and
// members) close with it at sign-out; each one closed before is let go of
// then, not kept, with its detached DOM, until the sign-out.
describe("web: dialogs", () => {
  const { browser, start } = appSuite();
  const body = () => (browser.document as unknown as { body: FakeElement }).body;
  const button = (within: FakeElement, text: string) => within.querySelectorAll("button").find((b) => b.textContent === text)!;

  it("lets go of a dialog once it is closed, and closes the one still open with the app", async () => {
    const r = await start(new FakeServer());
    const kept = () => (r.app as unknown as { dialogs: { dialogs: Set<unknown> } }).dialogs.dialogs.size;
    const account = r.browser.root.querySelector("[data-testid=account]")!;
    for (let i = 0; i < 3; i++) {
      account.click();
      const dialog = body().querySelector("dialog")!;
      assert.ok(dialog?.open, "the account dialog shown");
      assert.equal(kept(), 1);
      button(dialog, "Close").click();
      assert.equal(body().querySelector("dialog"), null, "the closed dialog still in the page");
      await waitFor(() => kept() === 0, `the closed dialog let go of (${kept()} kept)`, 2_000);
    }

    account.click();
    await settle();
    assert.equal(kept(), 1);
    r.stop();
    assert.equal(body().querySelector("dialog"), null, "a dialog left open after the app closed");
    assert.equal(kept(), 0);
  });
});
