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

  it("fails /healthz after 30 s of failing, or after CHAT_PIPELINE_STALL_MS, refusing one under a second or over an hour", () => {
    assert.equal(readPipelineConfig({}).stallMs, 30_000);
    assert.equal(readPipelineConfig({ CHAT_PIPELINE_STALL_MS: "5000" }).stallMs, 5_000);
    for (const v of ["999", "3600001", "5s", "-1"]) refused({ CHAT_PIPELINE_STALL_MS: v }, /CHAT_PIPELINE_STALL_MS/);
  });
});
