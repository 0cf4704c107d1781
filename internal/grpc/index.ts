/**
 * Server reflection (grpc.reflection.v1 and v1alpha) and the standard health
 * service (grpc.health.v1.Health: Check, Watch, List) for every gRPC server
 * of the project, so `grpcurl` works with no proto files at hand and load
 * balancers and orchestrators can probe each server.
 *
 * Two kinds of server use it, through one implementation:
 *   - Connect routers (connect-node): the public API on chatd's h2c listener
 *     (and the `api` process), `registerReflectionAndHealth(router)`.
 *   - grpc-js Servers: the internal contracts of the distributed mode,
 *     `addReflectionAndHealth(server, [ChatServerServiceService, ...])`.
 *
 * Why not a grpc-js Server with @grpc/reflection and grpc-health-check in
 * front of the public API (the DESIGN.md suggestion, option "a"):
 *   1. @grpc/reflection 1.0.4 cannot describe this project's contracts. It
 *      reads a proto-loader package definition, which regroups the files by
 *      package: all eight chat/v1/*.proto come back as one "chat/v1/users.proto"
 *      with no `import` of google/protobuf/timestamp.proto, and the internal
 *      services are listed too. grpcurl then fails on an unresolvable
 *      reference (grpc/grpc-node issue 3018, still open; WKTs: issue 2958).
 *   2. Serving the public Connect ServiceImpls from grpc-js needs a bridge for
 *      every call shape (unary, server and bidi streaming), error codes,
 *      headers, trailers, deadlines and cancellation: a second gRPC server
 *      implementation to maintain beside connect-node, which already speaks
 *      gRPC over HTTP/2 (it passes the Connect conformance suite) and already
 *      serves the realtime bidi stream.
 * So (option "b"): reflection and health are ordinary services. Reflection
 * answers from the FileDescriptorProtos that `buf build` wrote
 * (gen/descriptor.binpb), file for file as compiled, with imports and
 * comments, limited to the files the served services reach; health keeps one
 * status table per server. Thin adapters expose both as Connect ServiceImpls
 * and as grpc-js handlers (protobuf-es does the serialization in both).
 *
 * The standard contracts are vendored in internal/grpc/proto (unchanged,
 * Apache-2.0) and generated with protoc-gen-es into internal/grpc/gen.
 */
import type { DescService } from "@bufbuild/protobuf";
import type { FileDescriptorProto } from "@bufbuild/protobuf/wkt";
import type { ConnectRouter } from "@connectrpc/connect";
import type * as grpc from "@grpc/grpc-js";
import { DEFAULT_DESCRIPTOR_SET, DescriptorPool, filesOf, readDescriptorSet } from "./descriptors.js";
import { addHealthToGrpcJs, addReflectionToGrpcJs, serviceNameOf } from "./grpc-js.js";
import { HEALTH_FILES, HEALTH_SERVICE_NAME, Health, HealthStatus, healthConnect } from "./health.js";
import {
  REFLECTION_FILES,
  REFLECTION_SERVICE_NAMES,
  ServerReflectionV1,
  ServerReflectionV1Alpha,
  reflectionV1AlphaConnect,
  reflectionV1Connect,
} from "./reflection.js";

export { DEFAULT_DESCRIPTOR_SET, DescriptorPool, readDescriptorSet } from "./descriptors.js";
export { HealthStatus, ServingStatus, healthConnect } from "./health.js";
export { answerReflection, reflectionV1AlphaConnect, reflectionV1Connect } from "./reflection.js";
export { addHealthToGrpcJs, addReflectionToGrpcJs, grpcJsServiceDefinition, serviceNameOf } from "./grpc-js.js";

/** A served service: its full name, a protobuf-es descriptor, or a grpc-js definition (ts-proto's `XxxService`). */
export type ServiceRef = string | DescService | grpc.ServiceDefinition;

export interface ReflectionAndHealthOptions {
  /** The descriptors of the served services: a descriptor set's path or the files. Default: gen/descriptor.binpb. */
  descriptors?: string | readonly FileDescriptorProto[];
  /** The server's health table, when the caller already has one (to mark it NOT_SERVING on drain). */
  health?: HealthStatus;
}

export interface ReflectionAndHealth {
  pool: DescriptorPool;
  /** Every served service starts SERVING; call `shutdown()` when the server starts draining. */
  health: HealthStatus;
}

const descriptorSets = new Map<string, readonly FileDescriptorProto[]>();

function nameOf(ref: ServiceRef): string {
  if (typeof ref === "string") return ref;
  if ("typeName" in ref && typeof ref.typeName === "string" && "methods" in ref) return ref.typeName;
  return serviceNameOf(ref as grpc.ServiceDefinition);
}

/** Builds the reflection index and the health table for a server serving `services`. */
export function reflectionAndHealth(services: readonly ServiceRef[], options: ReflectionAndHealthOptions = {}): ReflectionAndHealth {
  const own = new Set<string>([...REFLECTION_SERVICE_NAMES, HEALTH_SERVICE_NAME]);
  const app = [...new Set(services.map(nameOf))].filter((s) => !own.has(s));
  let files: readonly FileDescriptorProto[];
  if (typeof options.descriptors === "string" || options.descriptors === undefined) {
    const path = options.descriptors ?? DEFAULT_DESCRIPTOR_SET;
    files = descriptorSets.get(path) ?? readDescriptorSet(path);
    descriptorSets.set(path, files);
  } else {
    files = options.descriptors;
  }
  const pool = new DescriptorPool([...files, ...filesOf(...REFLECTION_FILES, ...HEALTH_FILES)], [...app, ...own]);
  const health = options.health ?? new HealthStatus();
  for (const s of app) health.add(s);
  return { pool, health };
}

/**
 * For a grpc-js Server: adds reflection (v1, v1alpha) and health for
 * `services` (the ones already added, or about to be). Returns the health
 * table; call `health.shutdown()` before `server.tryShutdown()`.
 *
 *   const server = new grpc.Server();
 *   server.addService(ChatServerServiceService, impl);
 *   const { health } = addReflectionAndHealth(server, [ChatServerServiceService]);
 */
export function addReflectionAndHealth(
  server: Pick<grpc.Server, "addService">,
  services: readonly ServiceRef[],
  options: ReflectionAndHealthOptions = {},
): ReflectionAndHealth {
  const rh = reflectionAndHealth(services, options);
  addReflectionToGrpcJs(server, rh.pool);
  addHealthToGrpcJs(server, rh.health);
  return rh;
}

/**
 * For a Connect router: adds reflection (v1, v1alpha) and health for every
 * service already registered on `router`. Call it last in the routes function:
 *
 *   connectNodeAdapter({ routes: (router) => { registerApi(router); registerReflectionAndHealth(router, { health }); } })
 */
export function registerReflectionAndHealth(router: ConnectRouter, options: ReflectionAndHealthOptions = {}): ReflectionAndHealth {
  const rh = reflectionAndHealth(
    router.handlers.map((h) => h.service.typeName),
    options,
  );
  router.service(ServerReflectionV1, reflectionV1Connect(rh.pool));
  router.service(ServerReflectionV1Alpha, reflectionV1AlphaConnect(rh.pool));
  router.service(Health, healthConnect(rh.health));
  return rh;
}
