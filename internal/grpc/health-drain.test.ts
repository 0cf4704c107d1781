import assert from "node:assert/strict";
import type { AddressInfo } from "node:net";
import { create } from "@bufbuild/protobuf";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { closableHttp2, stopGrpcServer } from "../observability/lifecycle.js";
import { waitFor } from "../../test/support/wait.js";
import { HealthCheckRequestSchema, type HealthCheckResponse } from "./gen/grpc/health/v1/health_pb.js";
import { HealthStatus, ServingStatus, addReflectionAndHealth, grpcJsServiceDefinition, registerReflectionAndHealth } from "./index.js";
import { Health } from "./health.js";
import { createGrpcListener } from "./listener.js";

describe("internal/grpc: a health Watch while its server drains", () => {
  it("tells the watcher NOT_SERVING and ends its stream UNAVAILABLE, so the listener's close waits for no grace", async () => {
    const health = new HealthStatus();
    const server = createGrpcListener(connectNodeAdapter({ routes: (router) => void registerReflectionAndHealth(router, { health }) }));
    const listener = closableHttp2(server);
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const { port } = server.address() as AddressInfo;
    const Client = grpc.makeGenericClientConstructor(grpcJsServiceDefinition(Health), "Health");
    const client = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    try {
      const seen: ServingStatus[] = [];
      let status: grpc.StatusObject | undefined;
      const call = client.watch(create(HealthCheckRequestSchema, { service: "" }));
      call.on("data", (r: HealthCheckResponse) => seen.push(r.status));
      call.on("error", () => {});
      call.on("status", (s: grpc.StatusObject) => (status = s));
      await waitFor(() => seen.length === 1, "the first status");
      health.shutdown();
      const t0 = performance.now();
      await listener.close(2_000);
      const closeMs = performance.now() - t0;
      await waitFor(() => status !== undefined, "the Watch's status");
      assert.deepEqual(seen, [ServingStatus.SERVING, ServingStatus.NOT_SERVING]);
      assert.equal(status!.code, grpc.status.UNAVAILABLE, status!.details);
      assert.ok(closeMs < 1_000, `the listener closed in ${Math.round(closeMs)} ms, held by the Watch until the grace ran out`);
    } finally {
      client.close();
      server.close();
    }
  });

  it("does so on a grpc-js server too (the chat servers'), whose tryShutdown waited on the Watch", async () => {
    const server = new grpc.Server();
    const { health } = addReflectionAndHealth(server, []);
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
    const Client = grpc.makeGenericClientConstructor(grpcJsServiceDefinition(Health), "Health");
    const client = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    try {
      const seen: ServingStatus[] = [];
      let status: grpc.StatusObject | undefined;
      const call = client.watch(create(HealthCheckRequestSchema, { service: "" }));
      call.on("data", (r: HealthCheckResponse) => seen.push(r.status));
      call.on("error", () => {});
      call.on("status", (s: grpc.StatusObject) => (status = s));
      await waitFor(() => seen.length === 1, "the first status");
      health.shutdown();
      const t0 = performance.now();
      await stopGrpcServer(server, 2_000);
      const closeMs = performance.now() - t0;
      await waitFor(() => status !== undefined, "the Watch's status");
      assert.deepEqual(seen, [ServingStatus.SERVING, ServingStatus.NOT_SERVING]);
      assert.equal(status!.code, grpc.status.UNAVAILABLE, status!.details);
      assert.ok(closeMs < 1_000, `the server stopped in ${Math.round(closeMs)} ms, held by the Watch until the grace ran out`);
    } finally {
      client.close();
      server.forceShutdown();
    }
  });

  it("ends a Watch opened once the drain began after its one NOT_SERVING, on either kind of server", async () => {
    const health = new HealthStatus();
    health.shutdown();
    const connectServer = createGrpcListener(connectNodeAdapter({ routes: (router) => void registerReflectionAndHealth(router, { health }) }));
    await new Promise<void>((r) => connectServer.listen(0, "127.0.0.1", r));
    const grpcServer = new grpc.Server();
    addReflectionAndHealth(grpcServer, [], { health });
    const grpcPort = await new Promise<number>((resolve, reject) =>
      grpcServer.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
    const Client = grpc.makeGenericClientConstructor(grpcJsServiceDefinition(Health), "Health");
    const clients = [(connectServer.address() as AddressInfo).port, grpcPort].map((p) => new Client(`127.0.0.1:${p}`, grpc.credentials.createInsecure()));
    try {
      for (const client of clients) {
        const seen: ServingStatus[] = [];
        let status: grpc.StatusObject | undefined;
        const call = client.watch(create(HealthCheckRequestSchema, { service: "" }));
        call.on("data", (r: HealthCheckResponse) => seen.push(r.status));
        call.on("error", () => {});
        call.on("status", (s: grpc.StatusObject) => (status = s));
        await waitFor(() => status !== undefined, "the Watch's status");
        assert.deepEqual(seen, [ServingStatus.NOT_SERVING]);
        assert.equal(status!.code, grpc.status.UNAVAILABLE, status!.details);
      }
      assert.equal(health.watchers(), 0);
    } finally {
      for (const c of clients) c.close();
      connectServer.close();
      grpcServer.forceShutdown();
    }
  });
});
