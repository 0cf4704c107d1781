import assert from "node:assert/strict";
import { decodeClientFrame } from "../chatserver/codec.js";
import { quoteUnsafeIntegers } from "./json-integers.js";

describe("quoteUnsafeIntegers", () => {
  it("writes an integer past 2^53, in either sign, as a string, exactly as it was written", () => {
    assert.equal(quoteUnsafeIntegers(`{"a":122799081264250881,"b":[-9007199254740993, 1]}`), `{"a":"122799081264250881","b":["-9007199254740993", 1]}`);
    assert.equal(quoteUnsafeIntegers(`{"a":1.2279908126425088e17}`), `{"a":"1.2279908126425088e17"}`);
  });

  it("leaves every other number, and numbers inside strings, as they are", () => {
    for (const json of [
      `{"a":9007199254740991,"b":-9007199254740991,"c":1.5,"d":1e3,"e":0.1234567890123456789}`,
      `{"t":"122799081264250881 \\" 122799081264250881","u":"\\\\","v":122}`,
      `{"x":"9e99"}`,
      `[1e400, -0, true, null]`,
    ]) {
      assert.equal(quoteUnsafeIntegers(json), json);
    }
  });
});

describe("a JSON frame's 64-bit ids", () => {
  it("reads one written as a number past 2^53 exactly, as the same written as a string", () => {
    for (const id of ["122799081264250881", `"122799081264250881"`]) {
      const frame = decodeClientFrame(`{"ref":${id},"send":{"channelId":${id},"clientMsgId":"c","text":"hi"}}`, "json");
      assert.equal(frame.ref, 122799081264250881n);
      assert.equal(frame.kind.case === "send" && frame.kind.value.channelId, 122799081264250881n);
    }
  });

  it("refuses one past 2^53 in a form that has lost its digits, rather than sending to the id it rounds to", () => {
    assert.throws(() => decodeClientFrame(`{"send":{"channelId":1.2279908126425088e17,"clientMsgId":"c","text":"hi"}}`, "json"), /channel_id/);
  });
});
