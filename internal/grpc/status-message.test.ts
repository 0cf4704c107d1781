import assert from "node:assert/strict";
import { MAX_GRPC_MESSAGE_BYTES, specGrpcMessage } from "./status-message.js";

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

  it("cuts a text past MAX_GRPC_MESSAGE_BYTES between characters, marked: an error quoting a client's 100,000-character key was trailers past the client's header limit, a reset with no status", () => {
    const text = `unknown key "${"é".repeat(100_000)}"`;
    const sent = decodeURIComponent(specGrpcMessage(encodeURIComponent(text)));
    assert.ok(Buffer.byteLength(sent) <= MAX_GRPC_MESSAGE_BYTES, `${Buffer.byteLength(sent)} bytes`);
    assert.ok(sent.endsWith("é..."), sent.slice(-8));
    assert.ok(text.startsWith(sent.slice(0, -3)));
    assert.equal(specGrpcMessage(encodeURIComponent("x".repeat(MAX_GRPC_MESSAGE_BYTES))), "x".repeat(MAX_GRPC_MESSAGE_BYTES));
  });

  it("passes on what is not percent-encoding at all", () => {
    assert.equal(specGrpcMessage("%E0%A4%A"), "%E0%A4%A");
  });
});
