import assert from "node:assert/strict";
import { fromBinary } from "@bufbuild/protobuf";
import { ServerFrameSchema, type ServerFrame } from "../../gen/es/chat/v1/session_pb.js";
import { advertisedAddress, readChatServerConfig, sessionLimitsOf } from "../../cmd/chat-server/config.js";
import { ConfigError } from "../../internal/config/env.js";
import { stubInbox } from "../support/inbox.js";
import { waitFor } from "../support/wait.js";
import { ChatServer } from "../../internal/chatserver/server.js";

// The chat-server process's configuration (cmd/chat-server).
describe("chat-server configuration", () => {
  const inbox = stubInbox();

  /** The max_frame_bytes a session's Welcome announces on a chat server configured from `env`. */
  async function welcomedMaxFrameBytes(env: NodeJS.ProcessEnv): Promise<number> {
    const chat = new ChatServer({ serverId: "t", inbox, channels: {} as never, submitter: {} as never, limits: sessionLimitsOf(readChatServerConfig(env)) });
    const frames: ServerFrame[] = [];
    chat.open({ userId: 1n, deviceId: 1n, tokenExpiresAtMs: Date.now() + 60_000, encoding: "proto" }, {
      send: (f) => void frames.push(fromBinary(ServerFrameSchema, f as Uint8Array)),
      bufferedBytes: () => 0,
      close: () => undefined,
    });
    try {
      const welcome = await waitFor(() => frames.find((f) => f.kind.case === "welcome"), "the welcome");
      return welcome.kind.case === "welcome" ? welcome.kind.value.maxFrameBytes : -1;
    } finally {
      chat.drain();
    }
  }

  it("announces the gateways' CHAT_MAX_FRAME_BYTES in the Welcome, 512 KiB by default", async () => {
    assert.equal(await welcomedMaxFrameBytes({ CHAT_MAX_FRAME_BYTES: "65536" }), 65536);
    assert.equal(await welcomedMaxFrameBytes({}), 512 * 1024);
  });

  it("refuses a CHAT_SERVER_ID that cannot name an etcd key at start-up, naming it; the default is unique per process", () => {
    for (const raw of ["cs/1", "a b", "x".repeat(129)]) {
      assert.throws(() => readChatServerConfig({ CHAT_SERVER_ID: raw }), (err) => err instanceof ConfigError && /CHAT_SERVER_ID/.test(err.message), raw);
    }
    assert.equal(readChatServerConfig({ CHAT_SERVER_ID: "cs-1.eu:a_b" }).serverId, "cs-1.eu:a_b");
    assert.notEqual(readChatServerConfig({}).serverId, readChatServerConfig({}).serverId);
  });

  it("refuses a CHAT_MAX_FRAME_BYTES the gateways would refuse, naming it", () => {
    for (const raw of ["abc", "1023", String(16 * 1024 * 1024 + 1)]) {
      assert.throws(() => readChatServerConfig({ CHAT_MAX_FRAME_BYTES: raw }), (err) => err instanceof ConfigError && /CHAT_MAX_FRAME_BYTES/.test(err.message), raw);
    }
  });
  it("refuses a wildcard CHAT_HOST without a CHAT_ADVERTISE_HOST, and an advertised host with a port, naming the variable", () => {
    for (const host of ["0.0.0.0", "::"]) {
      assert.throws(() => readChatServerConfig({ CHAT_HOST: host }), (err) => err instanceof ConfigError && /CHAT_ADVERTISE_HOST: required/.test(err.message), host);
    }
    for (const advertised of ["10.0.0.5:9100", "0.0.0.0", "chat 1"]) {
      assert.throws(() => readChatServerConfig({ CHAT_ADVERTISE_HOST: advertised }), (err) => err instanceof ConfigError && /CHAT_ADVERTISE_HOST/.test(err.message), advertised);
    }
    const config = readChatServerConfig({ CHAT_HOST: "0.0.0.0", CHAT_ADVERTISE_HOST: "chat-1.internal" });
    assert.equal(advertisedAddress(config, 9100), "chat-1.internal:9100");
    assert.equal(advertisedAddress(readChatServerConfig({ CHAT_HOST: "::", CHAT_ADVERTISE_HOST: "fd00::5" }), 9100), "[fd00::5]:9100");
    assert.equal(advertisedAddress(readChatServerConfig({}), 9100), "127.0.0.1:9100");
  });
});
