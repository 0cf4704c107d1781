import { fromBinary } from "@bufbuild/protobuf";
import { ServerFrameSchema as EsServerFrameSchema, type ServerFrame as EsServerFrame } from "../../gen/es/chat/v1/session_pb.js";
import { ServerFrame as TsServerFrame } from "../../gen/ts-proto/chat/v1/session.js";

/**
 * The domain speaks protobuf-es; the internal grpc-js contracts are ts-proto.
 * A ServerFrame of a Deliver call crosses between the two as its wire bytes,
 * which both agree on (DeliverStream carries the bytes themselves).
 */
export function fromTsProto(frame: TsServerFrame): EsServerFrame {
  return fromBinary(EsServerFrameSchema, TsServerFrame.encode(frame).finish());
}
