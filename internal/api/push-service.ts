import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { PushService } from "../../gen/es/chat/v1/push_pb.js";
import { caller } from "./context.js";
import type { ApiDeps } from "./deps.js";

/** Placeholder until push delivery exists: every method answers Unimplemented (after auth). */
export function pushService(_deps: ApiDeps): Partial<ServiceImpl<typeof PushService>> {
  const unimplemented = (_req: unknown, ctx: HandlerContext): never => {
    caller(ctx);
    throw new ConnectError("push notifications are not available on this server yet", Code.Unimplemented);
  };
  return {
    registerPushEndpoint: unimplemented,
    unregisterPushEndpoint: unimplemented,
    updatePushSettings: unimplemented,
    getVapidPublicKey: unimplemented,
  };
}
