import assert from "node:assert/strict";
import { Registry } from "prom-client";
import { metricIn } from "../../test/support/metrics.js";
import { seriesAt, seriesOf } from "../../test/support/series.js";
import { ERROR_CODE_NAMES } from "../model/errors.js";
import { chatServerMetrics, SEND_KINDS } from "./metrics.js";

describe("chat server metrics", () => {
  it("scrape every series of their labelled counters at 0 before anything happened: a process's first refusal moves increase()", async () => {
    const registry = new Registry();
    chatServerMetrics(registry);
    assert.deepEqual(await seriesOf(registry, "chat_sends_total", ["kind"]), seriesAt(0, { kind: SEND_KINDS }));
    assert.deepEqual(await seriesOf(registry, "chat_frames_refused_total", ["code"]), seriesAt(0, { code: ERROR_CODE_NAMES }));
    assert.deepEqual(await seriesOf(registry, "chat_send_claims_total", ["outcome"]), seriesAt(0, { outcome: ["new", "held", "failed"] }));
  });

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
