import assert from "node:assert/strict";
import { SERVER_CLOCK_WINDOW_MS, ServerClock } from "../../internal/cli/server-clock.js";

describe("chat-cli: the server's clock as the frames' server times tell it", () => {
  // This machine's clock, moved by the tests; the server's runs 10 s ahead of it.
  let local = 1_000_000;
  const AHEAD = 10_000;
  const clock = () => new ServerClock(() => local);
  /** A frame stamped by the server `lateMs` before it is read here. */
  const readLate = (c: ServerClock, lateMs: number) => c.sample(local + AHEAD - lateMs);

  it("takes the least delayed of the recent samples: a Welcome read late on a loaded machine does not put it back", () => {
    const c = clock();
    readLate(c, 3);
    local += 25_000;
    readLate(c, 1_500);
    assert.equal(c.now(), local + AHEAD - 3);
    assert.equal(c.toServer(local - 100), local + AHEAD - 103);
  });

  it("moves to a nearer sample as one comes", () => {
    const c = clock();
    readLate(c, 800);
    local += 1_000;
    readLate(c, 2);
    assert.equal(c.offsetMs(), AHEAD - 2);
  });

  it("forgets a sample past the window (a clock set since is believed), keeping the newest whatever its age", () => {
    const c = clock();
    readLate(c, 1);
    local += 1_000;
    readLate(c, 400);
    local += SERVER_CLOCK_WINDOW_MS;
    assert.equal(c.offsetMs(), AHEAD - 400);
    local += SERVER_CLOCK_WINDOW_MS;
    assert.equal(c.offsetMs(), AHEAD - 400);
  });

  it("is this machine's clock before any sample", () => {
    assert.equal(clock().now(), local);
  });
});
