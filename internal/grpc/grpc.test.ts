import assert from "node:assert/strict";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { create, fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { createClient, type ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter, createGrpcTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { AuthService } from "../../gen/es/chat/v1/auth_pb.js";
import { SessionService } from "../../gen/es/chat/v1/session_pb.js";
import { ChatServerServiceService } from "../../gen/ts-proto/chat/internal/v1/chat_server.js";
import { waitFor } from "../../test/support/wait.js";
import { Health, HealthCheckRequestSchema, type HealthCheckResponse } from "./gen/grpc/health/v1/health_pb.js";
import {
  ServerReflectionRequestSchema as AlphaRequestSchema,
  type ServerReflectionRequest as AlphaRequest,
  type ServerReflectionResponse as AlphaResponse,
} from "./gen/grpc/reflection/v1alpha/reflection_pb.js";
import {
  DescriptorPool,
  HealthStatus,
  ServingStatus,
  addReflectionAndHealth,
  grpcJsServiceDefinition,
  readDescriptorSet,
  reflectionAndHealth,
  registerReflectionAndHealth,
} from "./index.js";
import { ServerReflectionV1Alpha, answerReflection } from "./reflection.js";
import { ServerReflectionRequestSchema } from "./gen/grpc/reflection/v1/reflection_pb.js";

const names = (files: Uint8Array[] | undefined) => (files ?? []).map((b) => fromBinary(FileDescriptorProtoSchema, b).name);

describe("internal/grpc: reflection index", () => {
  const files = readDescriptorSet();

  it("serves only the files the served services reach, each as compiled, with its imports", () => {
    const pool = new DescriptorPool(files, ["chat.v1.SessionService"]);
    const got = names(pool.fileContainingSymbol("chat.v1.SessionService"));
    assert.equal(got[0], "chat/v1/session.proto");
    assert.deepEqual(new Set(got), new Set(["chat/v1/session.proto", "chat/v1/types.proto", "google/protobuf/timestamp.proto"]));
    // Another file of the same package that the session does not import is not visible.
    assert.equal(pool.fileByName("chat/v1/auth.proto"), undefined);
    assert.equal(pool.fileContainingSymbol("chat.internal.v1.ChatServerService"), undefined);
    assert.deepEqual(pool.services, ["chat.v1.SessionService"]);
  });

  it("finds every kind of symbol by its full name", () => {
    const pool = new DescriptorPool(files, ["chat.v1.SessionService", "chat.v1.AuthService"]);
    for (const [symbol, file] of [
      ["chat.v1.SessionService.Connect", "chat/v1/session.proto"],
      ["chat.v1.Welcome", "chat/v1/session.proto"],
      ["chat.v1.Welcome.heartbeat_interval_ms", "chat/v1/session.proto"],
      ["chat.v1.ClientFrame.kind", "chat/v1/session.proto"],
      ["chat.v1.ChannelEventKind", "chat/v1/session.proto"],
      ["chat.v1.CHANNEL_EVENT_KIND_JOINED", "chat/v1/session.proto"],
      [".chat.v1.SignUpRequest", "chat/v1/auth.proto"],
      ["google.protobuf.Timestamp", "google/protobuf/timestamp.proto"],
    ] as const) {
      assert.equal(names(pool.fileContainingSymbol(symbol))[0], file, symbol);
    }
    assert.equal(pool.fileContainingSymbol("chat.v1.Nope"), undefined);
    assert.deepEqual(pool.extensionNumbers("chat.v1.Welcome"), []);
    assert.equal(pool.extensionNumbers("chat.v1.Nope"), undefined);
  });

  it("refuses to start when a served service has no descriptor", () => {
    assert.throws(() => new DescriptorPool(files, ["chat.v1.Missing"]), /no descriptor declares chat\.v1\.Missing/);
  });

  it("answers v1 requests, with NOT_FOUND as an error response", () => {
    const { pool } = reflectionAndHealth([AuthService]);
    const list = answerReflection(pool, create(ServerReflectionRequestSchema, { host: "h", messageRequest: { case: "listServices", value: "*" } }));
    assert.equal(list.validHost, "h");
    assert.equal(list.messageResponse.case, "listServicesResponse");
    assert.deepEqual(
      list.messageResponse.value.service.map((s) => s.name),
      ["chat.v1.AuthService", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"],
    );
    const missing = answerReflection(pool, create(ServerReflectionRequestSchema, { messageRequest: { case: "fileByFilename", value: "x.proto" } }));
    assert.equal(missing.messageResponse.case, "errorResponse");
    assert.equal(missing.messageResponse.value.errorCode, grpc.status.NOT_FOUND);
    // The reflection and health contracts describe themselves too.
    const health = answerReflection(
      pool,
      create(ServerReflectionRequestSchema, { messageRequest: { case: "fileContainingSymbol", value: "grpc.health.v1.Health.Watch" } }),
    );
    assert.equal(health.messageResponse.case, "fileDescriptorResponse");
  });
});

describe("internal/grpc: health status", () => {
  it("reports, watches, and stays NOT_SERVING after shutdown", () => {
    const h = new HealthStatus(["a.A"]);
    const seen: ServingStatus[] = [];
    const stop = h.watch("a.A", (s) => seen.push(s));
    const unknown: ServingStatus[] = [];
    h.watch("b.B", (s) => unknown.push(s));
    h.set("a.A", ServingStatus.NOT_SERVING);
    h.set("a.A", ServingStatus.NOT_SERVING); // no change, no event
    h.set("a.A", ServingStatus.SERVING);
    h.shutdown();
    h.set("a.A", ServingStatus.SERVING); // ignored while draining
    assert.deepEqual(seen, [ServingStatus.SERVING, ServingStatus.NOT_SERVING, ServingStatus.SERVING, ServingStatus.NOT_SERVING]);
    assert.deepEqual(unknown, [ServingStatus.SERVICE_UNKNOWN]);
    assert.equal(h.get(""), ServingStatus.NOT_SERVING);
    h.resume();
    assert.equal(h.get("a.A"), ServingStatus.SERVING);
    stop();
    assert.equal(h.watchers(), 1);
  });
});

describe("internal/grpc: on a grpc-js Server", () => {
  let server: grpc.Server;
  let target: string;
  let health: HealthStatus;

  before(async () => {
    server = new grpc.Server();
    server.addService(ChatServerServiceService, {});
    ({ health } = addReflectionAndHealth(server, [ChatServerServiceService]));
    const port = await new Promise<number>((res, rej) =>
      server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) => (err ? rej(err) : res(p))),
    );
    target = `127.0.0.1:${port}`;
  });
  after(() => server.forceShutdown());

  it("answers reflection v1alpha on one stream, request after request", async () => {
    const Client = grpc.makeGenericClientConstructor(grpcJsServiceDefinition(ServerReflectionV1Alpha), "r");
    const client = new Client(target, grpc.credentials.createInsecure());
    try {
      const call = (client as unknown as Record<string, () => grpc.ClientDuplexStream<AlphaRequest, AlphaResponse>>).serverReflectionInfo!.call(client);
      const out: AlphaResponse[] = [];
      call.on("data", (r: AlphaResponse) => out.push(r));
      call.write(create(AlphaRequestSchema, { messageRequest: { case: "listServices", value: "" } }));
      call.write(create(AlphaRequestSchema, { messageRequest: { case: "fileContainingSymbol", value: "chat.internal.v1.ChatServerService" } }));
      call.end();
      await new Promise((r) => call.on("end", r));
      assert.equal(out.length, 2);
      assert.equal(out[0]!.messageResponse.case, "listServicesResponse");
      assert.ok(out[0]!.messageResponse.value.service.some((s) => s.name === "chat.internal.v1.ChatServerService"));
      assert.equal(out[1]!.messageResponse.case, "fileDescriptorResponse");
      assert.equal(names(out[1]!.messageResponse.value.fileDescriptorProto)[0], "chat/internal/v1/chat_server.proto");
    } finally {
      client.close();
    }
  });

  it("streams health changes to Watch and forgets the watcher when the client cancels", async () => {
    const Client = grpc.makeGenericClientConstructor(grpcJsServiceDefinition(Health), "h");
    const client = new Client(target, grpc.credentials.createInsecure());
    try {
      const watch = (client as unknown as Record<string, (req: unknown) => grpc.ClientReadableStream<HealthCheckResponse>>).watch!.call(
        client,
        create(HealthCheckRequestSchema, { service: "chat.internal.v1.ChatServerService" }),
      );
      const seen: ServingStatus[] = [];
      watch.on("data", (r: HealthCheckResponse) => seen.push(r.status));
      watch.on("error", () => {});
      await waitFor(() => seen.length === 1, "the current status");
      health.set("chat.internal.v1.ChatServerService", ServingStatus.NOT_SERVING);
      await waitFor(() => seen.length === 2, "the change");
      assert.deepEqual(seen, [ServingStatus.SERVING, ServingStatus.NOT_SERVING]);
      assert.equal(health.watchers(), 1);
      watch.cancel();
      await waitFor(() => health.watchers() === 0, "the watcher to go");
    } finally {
      client.close();
    }
  });
});

describe("internal/grpc: on a Connect router over h2c", () => {
  let server: http2.Http2Server;
  let baseUrl: string;
  const health = new HealthStatus();
  const sessions = new Set<http2.ServerHttp2Session>();

  before(async () => {
    const routes = (router: ConnectRouter) => {
      router.service(SessionService, {});
      registerReflectionAndHealth(router, { health });
    };
    server = http2.createServer(connectNodeAdapter({ routes }));
    server.on("session", (s) => sessions.add(s));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    // The client transport keeps its HTTP/2 session open; close() waits for it.
    for (const s of sessions) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  });

  it("registers health for the router's services, with Check, Watch and List", async () => {
    const client = createClient(Health, createGrpcTransport({ baseUrl }));
    assert.equal((await client.check({ service: "chat.v1.SessionService" })).status, ServingStatus.SERVING);
    await assert.rejects(client.check({ service: "chat.v1.AuthService" }), /unknown service/);
    const list = await client.list({});
    assert.deepEqual(Object.keys(list.statuses).sort(), ["", "chat.v1.SessionService"]);

    const abort = new AbortController();
    const seen: ServingStatus[] = [];
    const watching = (async () => {
      try {
        for await (const r of client.watch({ service: "" }, { signal: abort.signal })) seen.push(r.status);
      } catch {
        // cancelled
      }
    })();
    await waitFor(() => seen.length === 1, "the current status");
    health.shutdown();
    await waitFor(() => seen.length === 2, "NOT_SERVING on shutdown");
    assert.deepEqual(seen, [ServingStatus.SERVING, ServingStatus.NOT_SERVING]);
    abort.abort();
    await watching;
    await waitFor(() => health.watchers() === 0, "the watcher to go");
  });
});
