import assert from "node:assert/strict";
import { readPipelineConfig, STAGES } from "../../cmd/pipeline/config.js";
import { ConfigError } from "../../internal/config/env.js";

// The pipeline worker's configuration (cmd/pipeline).
describe("pipeline configuration", () => {
  const refused = (env: NodeJS.ProcessEnv, what: RegExp) =>
    assert.throws(() => readPipelineConfig(env), (err) => err instanceof ConfigError && what.test(err.message), JSON.stringify(env));

  it("runs every stage by default, or those CHAT_PIPELINE_STAGES names", () => {
    assert.deepEqual(readPipelineConfig({}).stages, [...STAGES]);
    assert.deepEqual(readPipelineConfig({ CHAT_PIPELINE_STAGES: "inbox-writer" }).stages, ["inbox-writer"]);
  });

  it("refuses an unknown stage, or a list naming none (a worker that would consume nothing and report healthy)", () => {
    refused({ CHAT_PIPELINE_STAGES: "sequencer,writer" }, /CHAT_PIPELINE_STAGES: unknown stage "writer"/);
    refused({ CHAT_PIPELINE_STAGES: " , " }, /CHAT_PIPELINE_STAGES: names no stage/);
  });
});
