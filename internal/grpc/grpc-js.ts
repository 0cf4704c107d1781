import { create, fromBinary, toBinary, type DescMessage, type DescService, type MessageShape } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import type { DescriptorPool } from "./descriptors.js";
import { Health, HealthStatus, ServingStatus, checkResponse } from "./health.js";
import {
  HealthListResponseSchema,
  type HealthCheckRequest,
  type HealthCheckResponse,
  type HealthListRequest,
  type HealthListResponse,
} from "./gen/grpc/health/v1/health_pb.js";
import type { ServerReflectionRequest as RequestV1, ServerReflectionResponse as ResponseV1 } from "./gen/grpc/reflection/v1/reflection_pb.js";
import type {
  ServerReflectionRequest as RequestV1Alpha,
  ServerReflectionResponse as ResponseV1Alpha,
} from "./gen/grpc/reflection/v1alpha/reflection_pb.js";
import { ServerReflectionV1, ServerReflectionV1Alpha, answerReflection, answerReflectionV1Alpha } from "./reflection.js";

/**
 * A grpc-js ServiceDefinition for a protobuf-es service descriptor, with
 * protobuf-es doing the (de)serialization. Handler keys are the methods'
 * localName (lowerCamelCase), as in ServiceImpl.
 */
export function grpcJsServiceDefinition(service: DescService): grpc.ServiceDefinition {
  // grpc-js types handlers per definition; here the messages are protobuf-es ones of any schema.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const def: Record<string, grpc.MethodDefinition<any, any>> = {};
  for (const m of service.methods) {
    const codec = <D extends DescMessage>(schema: D) => ({
      serialize: (value: MessageShape<D>) => Buffer.from(toBinary(schema, value)),
      deserialize: (bytes: Buffer): MessageShape<D> => fromBinary(schema, bytes),
    });
    const input = codec(m.input);
    const output = codec(m.output);
    def[m.localName] = {
      path: `/${service.typeName}/${m.name}`,
      requestStream: m.methodKind === "client_streaming" || m.methodKind === "bidi_streaming",
      responseStream: m.methodKind === "server_streaming" || m.methodKind === "bidi_streaming",
      requestSerialize: input.serialize,
      requestDeserialize: input.deserialize,
      responseSerialize: output.serialize,
      responseDeserialize: output.deserialize,
      originalName: m.name,
    };
  }
  return def as grpc.ServiceDefinition;
}

/**
 * Writes to a grpc-js stream in order, honouring write() === false: while the
 * stream is full, incoming requests wait (the stream is paused).
 */
function answerEach<Req, Res>(call: grpc.ServerDuplexStream<Req, Res>, answer: (req: Req) => Res): void {
  call.on("data", (req: Req) => {
    if (!call.write(answer(req))) {
      call.pause();
      call.once("drain", () => call.resume());
    }
  });
  call.on("end", () => call.end());
  // A cancelled call emits an error here; there is nothing to clean up.
  call.on("error", () => {});
}

/** Adds grpc.reflection.v1 and v1alpha ServerReflection, answering from `pool`, to a grpc-js Server. */
export function addReflectionToGrpcJs(server: Pick<grpc.Server, "addService">, pool: DescriptorPool): void {
  server.addService(grpcJsServiceDefinition(ServerReflectionV1), {
    serverReflectionInfo: (call: grpc.ServerDuplexStream<RequestV1, ResponseV1>) => answerEach(call, (req) => answerReflection(pool, req)),
  });
  server.addService(grpcJsServiceDefinition(ServerReflectionV1Alpha), {
    serverReflectionInfo: (call: grpc.ServerDuplexStream<RequestV1Alpha, ResponseV1Alpha>) =>
      answerEach(call, (req) => answerReflectionV1Alpha(pool, req)),
  });
}

/** Adds grpc.health.v1.Health (Check, Watch, List), reading `health`, to a grpc-js Server. */
export function addHealthToGrpcJs(server: Pick<grpc.Server, "addService">, health: HealthStatus): void {
  server.addService(grpcJsServiceDefinition(Health), {
    check: (
      call: grpc.ServerUnaryCall<HealthCheckRequest, HealthCheckResponse>,
      callback: grpc.sendUnaryData<HealthCheckResponse>,
    ) => {
      const status = health.get(call.request.service);
      if (status === undefined) {
        callback({ code: grpc.status.NOT_FOUND, details: `unknown service ${JSON.stringify(call.request.service)}` });
        return;
      }
      callback(null, checkResponse(status));
    },
    watch: (call: grpc.ServerWritableStream<HealthCheckRequest, HealthCheckResponse>) => {
      // Only the newest status waits while the stream is full.
      let full = false;
      let pending: ServingStatus | undefined;
      const send = (s: ServingStatus) => {
        if (full) {
          pending = s;
          return;
        }
        full = !call.write(checkResponse(s));
        // Told NOT_SERVING, a watcher of a draining server is done: an open Watch held tryShutdown until its grace ran out.
        if (health.draining) call.emit("error", { code: grpc.status.UNAVAILABLE, details: "server shutting down" });
      };
      call.on("drain", () => {
        full = false;
        const s = pending;
        pending = undefined;
        if (s !== undefined) send(s);
      });
      const stop = health.watch(call.request.service, send);
      call.once("cancelled", stop);
      call.once("close", stop);
      call.on("error", () => stop());
    },
    list: (_call: grpc.ServerUnaryCall<HealthListRequest, HealthListResponse>, callback: grpc.sendUnaryData<HealthListResponse>) => {
      const res = create(HealthListResponseSchema);
      for (const [name, status] of health.all()) res.statuses[name] = checkResponse(status);
      callback(null, res);
    },
  });
}

/** The service name of a grpc-js ServiceDefinition (ts-proto's `XxxService` objects), from its methods' paths. */
export function serviceNameOf(definition: grpc.ServiceDefinition): string {
  for (const method of Object.values(definition)) {
    const m = /^\/([^/]+)\/[^/]+$/.exec(method.path);
    if (m) return m[1]!;
  }
  throw new Error("not a grpc-js service definition: no method path");
}
