/**
 * The ceiling: a minimal relay written with `ws` alone. It speaks the same
 * session protocol as chatd (so the same load generator drives it), but keeps
 * nothing on disk, checks no signature (it only reads the user id out of the
 * token), does no membership or rate checks and no ordering beyond one
 * in-memory counter per user. Whatever chatd does beyond this is the price of
 * persistence, auth and ordering; each benchmark figure is shown as a ratio to
 * this one measured in the same run.
 *
 *   node --import tsx bench/relay.ts      (RELAY_PORT, default 0 = any free port)
 *
 * Extra endpoints for the benchmark: POST /channels {"channels":[{"id":"1","members":["2","3"]}]}
 * declares channel membership; GET /metrics reports the heap like chatd's.
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { WebSocketServer, type WebSocket } from "ws";
import { ClientFrameSchema, ServerFrameSchema } from "../gen/es/chat/v1/session_pb.js";

const HEARTBEAT_MS = Number(process.env.RELAY_HEARTBEAT_MS ?? 25_000);

interface Conn {
  ws: WebSocket;
  userId: bigint;
  deviceId: bigint;
}

const byUser = new Map<bigint, Set<Conn>>();
const inboxSeq = new Map<bigint, bigint>();
const channels = new Map<bigint, bigint[]>();
const channelSeq = new Map<bigint, bigint>();
let nextMessageId = 1n;

const server = http.createServer((req, res) => {
  if (req.method === "GET" && req.url === "/metrics") {
    const m = process.memoryUsage();
    res.writeHead(200, { "content-type": "text/plain" }).end(
      `nodejs_heap_size_used_bytes ${m.heapUsed}\nnodejs_heap_size_total_bytes ${m.heapTotal}\nrelay_sessions ${countSessions()}\n`,
    );
    return;
  }
  if (req.method === "POST" && req.url === "/channels") {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as { channels: { id: string; members: string[] }[] };
      for (const c of body.channels) channels.set(BigInt(c.id), c.members.map(BigInt));
      res.writeHead(204).end();
    });
    return;
  }
  res.writeHead(404).end();
});

function countSessions(): number {
  let n = 0;
  for (const set of byUser.values()) n += set.size;
  return n;
}

const wss = new WebSocketServer({
  server,
  path: "/ws",
  perMessageDeflate: false,
  clientTracking: false,
  handleProtocols: (protocols) => (protocols.has("chat.v1.proto") ? "chat.v1.proto" : false),
});

wss.on("connection", (ws, req) => {
  // No auth: the user id is read from the token's payload, the signature is not checked.
  const offered = String(req.headers["sec-websocket-protocol"] ?? "").split(",").map((p) => p.trim());
  const token = offered.find((p) => p.startsWith("bearer."))?.slice(7) ?? "";
  let conn: Conn;
  try {
    const payload = JSON.parse(Buffer.from(token.split(".")[0]!, "base64url").toString("utf8")) as { sub: string; dev: string };
    conn = { ws, userId: BigInt(payload.sub), deviceId: BigInt(payload.dev) };
  } catch {
    ws.close(4001, "bad token");
    return;
  }
  let set = byUser.get(conn.userId);
  if (!set) byUser.set(conn.userId, (set = new Set()));
  set.add(conn);
  ws.send(
    toBinary(
      ServerFrameSchema,
      create(ServerFrameSchema, {
        kind: {
          case: "welcome",
          value: {
            userId: conn.userId,
            deviceId: conn.deviceId,
            sessionId: `relay:${conn.userId}:${conn.deviceId}`,
            serverTime: timestampNow(),
            heartbeatIntervalMs: HEARTBEAT_MS,
            headInboxSeq: inboxSeq.get(conn.userId) ?? 0n,
            deviceCursor: 0n,
          },
        },
      }),
    ),
  );
  ws.on("message", (data: Buffer, isBinary) => {
    if (!isBinary) return;
    let frame;
    try {
      frame = fromBinary(ClientFrameSchema, data);
    } catch {
      return;
    }
    const k = frame.kind;
    if (k.case === "send") {
      const { channelId, clientMsgId, text } = k.value;
      const members = channels.get(channelId) ?? [];
      const messageId = nextMessageId++;
      const seq = (channelSeq.get(channelId) ?? 0n) + 1n;
      channelSeq.set(channelId, seq);
      ws.send(
        toBinary(ServerFrameSchema, create(ServerFrameSchema, { ref: frame.ref, kind: { case: "sendAck", value: { clientMsgId, messageId, channelId } } })),
      );
      const message = {
        messageId,
        channelId,
        seq,
        senderUserId: conn.userId,
        senderDeviceId: conn.deviceId,
        clientMsgId,
        text,
        sentAt: timestampNow(),
      };
      for (const u of members) {
        const s = (inboxSeq.get(u) ?? 0n) + 1n;
        inboxSeq.set(u, s);
        const targets = byUser.get(u);
        if (!targets) continue;
        const bytes = toBinary(ServerFrameSchema, create(ServerFrameSchema, { kind: { case: "message", value: { entry: { inboxSeq: s, message } } } }));
        for (const t of targets) t.ws.send(bytes);
      }
    } else if (k.case === "heartbeat") {
      ws.send(toBinary(ServerFrameSchema, create(ServerFrameSchema, { ref: frame.ref, kind: { case: "heartbeatAck", value: { serverTime: timestampNow() } } })));
    }
  });
  ws.on("error", () => {});
  ws.on("close", () => {
    set!.delete(conn);
    if (set!.size === 0) byUser.delete(conn.userId);
  });
});

server.listen(Number(process.env.RELAY_PORT ?? 0), process.env.RELAY_HOST ?? "127.0.0.1", () => {
  const { address, port } = server.address() as AddressInfo;
  process.stdout.write(`${JSON.stringify({ msg: "relay listening", http: `http://${address}:${port}`, ws: `ws://${address}:${port}/ws` })}\n`);
});

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    wss.close();
    server.closeAllConnections();
    server.close(() => process.exit(0));
    setTimeout(() => process.exit(0), 1000).unref();
  });
}
