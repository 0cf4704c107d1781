import { strict as assert } from "node:assert";
import { create } from "@bufbuild/protobuf";
import { UserSchema, type User } from "../../gen/es/chat/v1/types_pb.js";
import { waitFor } from "../support/wait.js";
import { FakeEvent, fakeBrowser, settle } from "./fake-browser.js";

describe("web: searching users as one types (views/user-search.ts)", () => {
  const browser = fakeBrowser();
  before(() => browser.install());
  after(() => browser.uninstall());

  /** A search whose answers the test gives, one per query, in whatever order it likes. */
  function scriptedSearch() {
    const asked = new Map<string, (users: User[]) => void>();
    return {
      asked,
      search: (q: string) => new Promise<User[]>((resolve) => asked.set(q, resolve)),
      answer: (q: string, ...names: string[]) => asked.get(q)!(names.map((username, i) => create(UserSchema, { userId: BigInt(i + 1), username }))),
    };
  }

  async function setUp() {
    const { h } = await import("../../web/src/dom.js");
    const { searchAsTyped } = await import("../../web/src/views/user-search.js");
    const query = h("input");
    const results = h("ul");
    const failures: unknown[] = [];
    const s = scriptedSearch();
    const stop = searchAsTyped(query, results, { search: s.search, show: (users) => users.map((u) => h("li", {}, u.username)), failed: (err) => failures.push(err) });
    const type = (text: string) => {
      query.value = text;
      query.dispatchEvent(new FakeEvent("input") as unknown as Event);
    };
    return { query, results, failures, stop, type, ...s };
  }

  it("shows the newest search's answer, not an older one that came after it", async () => {
    const t = await setUp();
    t.type("al");
    await waitFor(() => t.asked.has("al"), "the search for al");
    t.type("ali");
    await waitFor(() => t.asked.has("ali"), "the search for ali");
    t.answer("ali", "alice");
    await settle();
    assert.equal(t.results.textContent, "alice");
    t.answer("al", "alan", "alice");
    await settle();
    assert.equal(t.results.textContent, "alice", "the slower answer to the older query is dropped");
  });

  it("clears the results for an empty query, and shows nothing once stopped", async () => {
    const t = await setUp();
    t.type("bo");
    await waitFor(() => t.asked.has("bo"), "the search for bo");
    t.answer("bo", "bob");
    await settle();
    assert.equal(t.results.textContent, "bob");
    t.type("  ");
    assert.equal(t.results.textContent, "");
    t.type("bob");
    await waitFor(() => t.asked.has("bob"), "the search for bob");
    t.stop();
    t.answer("bob", "bob");
    await settle();
    assert.equal(t.results.textContent, "", "a dialog closed meanwhile shows nothing");
    assert.deepEqual(t.failures, []);
  });
});
