import assert from "node:assert/strict";
import { applyPlaceChange } from "./places.js";

describe("applyPlaceChange", () => {
  it("sets and clears the settings a change names and keeps the others", () => {
    assert.deepEqual(applyPlaceChange({ pinnedAtMs: 1, markedUnreadAtMs: 2 }, { pinnedAtMs: null, archivedAtMs: 3 }), {
      place: { markedUnreadAtMs: 2, archivedAtMs: 3 },
      changed: true,
    });
  });

  it("says a change that moves nothing changed nothing, so nothing is written or told", () => {
    assert.deepEqual(applyPlaceChange(undefined, { pinnedAtMs: null, archivedAtMs: null }), { place: undefined, changed: false });
    assert.deepEqual(applyPlaceChange({ pinnedAtMs: 1 }, { pinnedAtMs: 1 }), { place: { pinnedAtMs: 1 }, changed: false });
    assert.deepEqual(applyPlaceChange({ pinnedAtMs: 1 }, {}), { place: { pinnedAtMs: 1 }, changed: false });
  });

  it("leaves no place once its last setting is cleared", () => {
    assert.deepEqual(applyPlaceChange({ archivedAtMs: 5 }, { archivedAtMs: null }), { place: undefined, changed: true });
  });
});
