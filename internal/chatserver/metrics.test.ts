import assert from "node:assert/strict";
import { Registry } from "prom-client";
import { metricIn } from "../../test/support/metrics.js";
import { chatServerMetrics } from "./metrics.js";

describe("chat server metrics", () => {
  it("scrape what the tallies counted since the start, each count once, by kind for sends", async () => {
    const registry = new Registry();
    const m = chatServerMetrics(registry);
    const zero = await registry.metrics();
    assert.equal(metricIn(zero, "chat_messages_in_total"), 0);
    assert.equal(metricIn(zero, "chat_entries_out_total"), 0);
    m.messagesIn.inc();
    m.messagesIn.inc();
    m.sendsByKind.message.inc();
    m.sendsByKind.reaction.inc();
    m.entriesOut.inc(3);
    const first = await registry.metrics();
    assert.equal(metricIn(first, "chat_messages_in_total"), 2);
    assert.equal(metricIn(first, "chat_sends_total", 'kind="message"'), 1);
    assert.equal(metricIn(first, "chat_sends_total", 'kind="reaction"'), 1);
    assert.equal(metricIn(first, "chat_entries_out_total"), 3);
    m.messagesIn.inc();
    m.entriesOut.inc();
    const second = await registry.metrics();
    assert.equal(metricIn(second, "chat_messages_in_total"), 3, "a second scrape adds only what came since");
    assert.equal(metricIn(second, "chat_sends_total", 'kind="message"'), 1);
    assert.equal(metricIn(second, "chat_entries_out_total"), 4);
  });
});
