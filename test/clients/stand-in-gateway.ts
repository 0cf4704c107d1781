import { once } from "node:events";
import type { AddressInfo } from "node:net";
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { WebSocketServer, type WebSocket } from "ws";
import { ServerFrameSchema } from "../../gen/es/chat/v1/session_pb.js";
import type { Session } from "../../internal/cli/client.js";

/** A WebSocket gateway that welcomes every connection and then sends only what the test writes on `sockets`. */
export interface StandInGateway {
  url: string;
  /** Every connection it took, oldest first. */
  sockets: WebSocket[];
  close(): Promise<void>;
}

export async function startStandInGateway(): Promise<StandInGateway> {
  const server = new WebSocketServer({ port: 0, host: "127.0.0.1" });
  await once(server, "listening");
  const sockets: WebSocket[] = [];
  server.on("connection", (socket) => {
    sockets.push(socket);
    socket.send(toBinary(ServerFrameSchema, create(ServerFrameSchema, { kind: { case: "welcome", value: { serverTime: timestampNow(), heartbeatIntervalMs: 25_000 } } })));
  });
  return {
    url: `ws://127.0.0.1:${(server.address() as AddressInfo).port}/ws`,
    sockets,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** A session whose api has nothing to add (the gateway brings every message) and whose token never needs a refresh. */
export function standInSession(): Session {
  const login = { server: "http://127.0.0.1:1", accessToken: "t", accessExpiresAtMs: Date.now() + 3_600_000 };
  return {
    login,
    userId: 1n,
    accessToken: async () => "t",
    refresh: async () => "t",
    api: {
      messages: { listMessages: async () => ({ messages: [], hasMore: false }) },
      channels: { describeChannel: async () => ({}) },
    },
  } as unknown as Session;
}
