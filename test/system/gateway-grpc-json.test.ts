import assert from "node:assert/strict";
import http2 from "node:http2";
import { signUp } from "../support/api.js";
import { openRawGrpcStream } from "../support/grpc-wire.js";
import { startEdge, useDeployment } from "../support/processes.js";
import { waitFor } from "../support/wait.js";

/**
 * One SessionService.Connect call in gRPC's JSON framing (application/grpc+json, as a
 * Connect or gRPC client set to JSON speaks it) on a raw HTTP/2 connection: each request
 * is the bytes given, so they need not be UTF-8. Collects the responses and the status.
 */
function jsonSession(baseUrl: string, token: string) {
  const { conn, req } = openRawGrpcStream(baseUrl, "/chat.v1.SessionService/Connect", { "content-type": "application/grpc+json", authorization: `Bearer ${token}` });
  const responses: { frame?: { ref?: string; sendAck?: unknown; error?: unknown; welcome?: unknown } }[] = [];
  let pending = Buffer.alloc(0);
  req.on("data", (chunk: Buffer) => {
    pending = Buffer.concat([pending, chunk]);
    while (pending.length >= 5 && pending.length >= 5 + pending.readUInt32BE(1)) {
      const len = pending.readUInt32BE(1);
      responses.push(JSON.parse(pending.subarray(5, 5 + len).toString("utf8")) as (typeof responses)[number]);
      pending = pending.subarray(5 + len);
    }
  });
  let status: { code: string; closeCode: string; message: string } | undefined;
  const onStatus = (h: http2.IncomingHttpHeaders) => {
    if (h["grpc-status"] !== undefined) status = { code: String(h["grpc-status"]), closeCode: String(h["chat-close-code"] ?? ""), message: String(h["grpc-message"] ?? "") };
  };
  req.on("response", onStatus);
  req.on("trailers", onStatus);
  return {
    responses,
    status: () => status,
    write(json: Buffer): void {
      const head = Buffer.alloc(5);
      head.writeUInt32BE(json.length, 1);
      req.write(Buffer.concat([head, json]));
    },
    close: () => conn.destroy(),
  };
}

describe("gateway: a native session's frames in gRPC's JSON framing", function () {
  this.timeout(180_000);
  const deployment = useDeployment("gwjson");
  let roles: { api: string; grpc: string };

  before(async () => {
    const { api, gateway } = await startEdge({ ...deployment.env, CHAT_OPS_PORT: "0" });
    roles = { api: String(api.info.http), grpc: String(gateway.info.grpc) };
  });

  /** Sends `json` (built for a group of alice's) on a new native session of alice's; the answer under one of `refs`, or the stream's status. */
  async function sendOnNewSession(json: (channelId: bigint) => Buffer, refs = ["7"]) {
    const alice = await signUp(roles.api, "gwj");
    const bob = await signUp(roles.api, "gwj");
    const { channel } = await alice.api.channels.createGroup({ title: "G", memberUserIds: [bob.userId] });
    const s = jsonSession(roles.grpc, alice.devices[0]!.token);
    try {
      await waitFor(() => s.responses.some((r) => r.frame?.welcome !== undefined), "the welcome");
      s.write(json(channel!.channelId));
      const answer = () => s.responses.find((r) => refs.includes(r.frame?.ref ?? ""));
      await waitFor(() => s.status() !== undefined || answer(), "the answer to the frame, or the stream's status");
      return { answer: answer(), status: s.status() };
    } finally {
      s.close();
    }
  }

  it("refuses a request that is not UTF-8, as chatd and a WebSocket do, rather than storing U+FFFD for its bad bytes", async () => {
    // "é" as Latin-1 (0xE9): one byte no UTF-8 decoder reads as a character.
    const { answer, status } = await sendOnNewSession((channelId) =>
      Buffer.from(`{"frame":{"ref":"7","send":{"channelId":"${channelId}","clientMsgId":"bad-utf8","text":"caf\u00e9"}}}`, "latin1"),
    );
    assert.equal(answer, undefined, `refused before it reached the session, not answered: ${JSON.stringify(answer)}`);
    assert.deepEqual([status?.code, status?.closeCode], ["3", "1007"], `refused as INVALID_ARGUMENT, close 1007: ${status?.message}`);
  });

  it("reads a 64-bit number written as a JSON number past 2^53 (as Go's encoding/json writes a uint64) exactly, not rounded to another", async () => {
    // A ref, which the ack hands back as it was read: a group's id may end in zero bits, which rounding keeps.
    const ref = "122799081264250881";
    let channel = 0n;
    const { answer, status } = await sendOnNewSession(
      (channelId) => {
        channel = channelId;
        return Buffer.from(`{"frame":{"ref":${ref},"send":{"channelId":${channelId},"clientMsgId":"number","text":"hi"}}}`, "utf8");
      },
      [ref, String(Number(ref))],
    );
    assert.equal(status, undefined);
    assert.deepEqual(
      [answer?.frame?.ref, (answer?.frame?.sendAck as { channelId?: string } | undefined)?.channelId],
      [ref, String(channel)],
      `acked under the ref and in the channel written: ${JSON.stringify(answer)}`,
    );
  });

  it("refuses a field ClientFrame does not have, as chatd and a WebSocket do, rather than sending the frame without it", async () => {
    const { answer, status } = await sendOnNewSession((channelId) =>
      Buffer.from(`{"frame":{"ref":"7","send":{"chanelId":"${channelId}","clientMsgId":"typo","text":"hi"}}}`, "utf8"),
    );
    assert.equal(answer, undefined, `refused before it reached the session, not answered: ${JSON.stringify(answer)}`);
    assert.deepEqual([status?.code, status?.closeCode], ["3", "1007"], `refused as INVALID_ARGUMENT, close 1007: ${status?.message}`);
    assert.match(decodeURIComponent(status?.message ?? ""), /chanelId/);
  });
});
