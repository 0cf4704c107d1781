import assert from "node:assert/strict";
import { PIPELINE_GROUPS, pipelineGroupsOf } from "./metrics.js";
import { ConsumerGroups, Topics } from "./topics.js";

describe("pipelineGroupsOf", () => {
  it("reports the lag of the consumer groups of the stages the process runs, no other", () => {
    assert.deepEqual(pipelineGroupsOf(["sequencer"]), [[ConsumerGroups.sequencer, Topics.submitted]]);
    assert.deepEqual(pipelineGroupsOf(["inbox-writer"]), [[ConsumerGroups.inboxWriter, Topics.inbox]]);
    assert.deepEqual(pipelineGroupsOf(["sequencer", "inbox-writer"]), PIPELINE_GROUPS);
  });
});
