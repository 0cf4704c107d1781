import assert from "node:assert/strict";
import { specGrpcMessage } from "./status-message.js";

describe("specGrpcMessage", () => {
  const samples = ["close 1009: message size 524292 is larger than 524288", "taken, pick another / or; not?#&=+$@", "100% naïve 名前 🙂", "", "%"];

  it("reads back the same text with decodeURI (grpc-js) and decodeURIComponent (Connect, grpcurl)", () => {
    for (const text of samples) {
      const sent = specGrpcMessage(encodeURIComponent(text));
      assert.equal(decodeURI(sent), text, `decodeURI of ${JSON.stringify(sent)}`);
      assert.equal(decodeURIComponent(sent), text, `decodeURIComponent of ${JSON.stringify(sent)}`);
    }
  });

  it("leaves printable ASCII but % as it is and escapes the rest", () => {
    assert.equal(specGrpcMessage(encodeURIComponent("a: b, c")), "a: b, c");
    assert.equal(specGrpcMessage(encodeURIComponent("5% é\n")), "5%25 %C3%A9%0A");
  });

  it("passes on what is not percent-encoding at all", () => {
    assert.equal(specGrpcMessage("%E0%A4%A"), "%E0%A4%A");
  });
});
