import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import {
  ServerReflection as ServerReflectionV1,
  ServerReflectionRequestSchema as RequestV1Schema,
  ServerReflectionResponseSchema as ResponseV1Schema,
  file_grpc_reflection_v1_reflection,
  type ServerReflectionRequest as RequestV1,
  type ServerReflectionResponse as ResponseV1,
} from "./gen/grpc/reflection/v1/reflection_pb.js";
import {
  ServerReflection as ServerReflectionV1Alpha,
  ServerReflectionRequestSchema as RequestV1AlphaSchema,
  ServerReflectionResponseSchema as ResponseV1AlphaSchema,
  file_grpc_reflection_v1alpha_reflection,
  type ServerReflectionRequest as RequestV1Alpha,
  type ServerReflectionResponse as ResponseV1Alpha,
} from "./gen/grpc/reflection/v1alpha/reflection_pb.js";
import type { DescriptorPool } from "./descriptors.js";

export { ServerReflectionV1, ServerReflectionV1Alpha };

/** Both reflection versions; grpcurl asks v1 first and falls back to v1alpha, older tools only know v1alpha. */
export const REFLECTION_SERVICE_NAMES = [ServerReflectionV1.typeName, ServerReflectionV1Alpha.typeName] as const;
export const REFLECTION_FILES = [file_grpc_reflection_v1_reflection, file_grpc_reflection_v1alpha_reflection];

// gRPC status codes used in ErrorResponse.error_code.
const NOT_FOUND = 5;
const INVALID_ARGUMENT = 3;

/** Answers one reflection request (grpc.reflection.v1) from a DescriptorPool. */
export function answerReflection(pool: DescriptorPool, req: RequestV1): ResponseV1 {
  const res = create(ResponseV1Schema, { validHost: req.host, originalRequest: req });
  const files = (found: Uint8Array[] | undefined, what: string): ResponseV1["messageResponse"] =>
    found
      ? { case: "fileDescriptorResponse", value: { $typeName: "grpc.reflection.v1.FileDescriptorResponse", fileDescriptorProto: found } }
      : notFound(what);
  const notFound = (what: string): ResponseV1["messageResponse"] => ({
    case: "errorResponse",
    value: { $typeName: "grpc.reflection.v1.ErrorResponse", errorCode: NOT_FOUND, errorMessage: `${what} not found` },
  });
  const r = req.messageRequest;
  switch (r.case) {
    case "listServices":
      res.messageResponse = {
        case: "listServicesResponse",
        value: {
          $typeName: "grpc.reflection.v1.ListServiceResponse",
          service: pool.services.map((name) => ({ $typeName: "grpc.reflection.v1.ServiceResponse", name })),
        },
      };
      break;
    case "fileByFilename":
      res.messageResponse = files(pool.fileByName(r.value), `file ${r.value}`);
      break;
    case "fileContainingSymbol":
      res.messageResponse = files(pool.fileContainingSymbol(r.value), `symbol ${r.value}`);
      break;
    case "fileContainingExtension":
      res.messageResponse = files(
        pool.fileContainingExtension(r.value.containingType, r.value.extensionNumber),
        `extension ${r.value.extensionNumber} of ${r.value.containingType}`,
      );
      break;
    case "allExtensionNumbersOfType": {
      const numbers = pool.extensionNumbers(r.value);
      res.messageResponse = numbers
        ? {
            case: "allExtensionNumbersResponse",
            value: { $typeName: "grpc.reflection.v1.ExtensionNumberResponse", baseTypeName: r.value, extensionNumber: numbers },
          }
        : notFound(`type ${r.value}`);
      break;
    }
    default:
      res.messageResponse = {
        case: "errorResponse",
        value: { $typeName: "grpc.reflection.v1.ErrorResponse", errorCode: INVALID_ARGUMENT, errorMessage: "empty reflection request" },
      };
  }
  return res;
}

/** v1alpha has the same messages, field for field, as v1: answer through the wire format. */
export function answerReflectionV1Alpha(pool: DescriptorPool, req: RequestV1Alpha): ResponseV1Alpha {
  const v1 = answerReflection(pool, fromBinary(RequestV1Schema, toBinary(RequestV1AlphaSchema, req)));
  return fromBinary(ResponseV1AlphaSchema, toBinary(ResponseV1Schema, v1));
}

/** grpc.reflection.v1.ServerReflection for a Connect router. */
export function reflectionV1Connect(pool: DescriptorPool): ServiceImpl<typeof ServerReflectionV1> {
  return {
    async *serverReflectionInfo(requests) {
      for await (const req of requests) yield answerReflection(pool, req);
    },
  };
}

/** grpc.reflection.v1alpha.ServerReflection for a Connect router. */
export function reflectionV1AlphaConnect(pool: DescriptorPool): ServiceImpl<typeof ServerReflectionV1Alpha> {
  return {
    async *serverReflectionInfo(requests) {
      for await (const req of requests) yield answerReflectionV1Alpha(pool, req);
    },
  };
}
