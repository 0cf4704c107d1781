import type { ConnectRouter } from "@connectrpc/connect";
import { AuthService } from "../../gen/es/chat/v1/auth_pb.js";
import { ChannelService } from "../../gen/es/chat/v1/channels_pb.js";
import { MessageService } from "../../gen/es/chat/v1/messages_pb.js";
import { PresenceService } from "../../gen/es/chat/v1/presence_pb.js";
import { PushService } from "../../gen/es/chat/v1/push_pb.js";
import { UserService } from "../../gen/es/chat/v1/users_pb.js";
import { authService } from "./auth-service.js";
import { channelService } from "./channels-service.js";
import { apiInterceptor } from "./context.js";
import { DeviceGate } from "./device-gate.js";
import type { ApiDeps } from "./deps.js";
import { withErrorCodeHeader } from "./errors.js";
import { messageService } from "./messages-service.js";
import { presenceService } from "./presence-service.js";
import { pushService } from "./push-service.js";
import { userService } from "./users-service.js";
import { STRICT_JSON_OPTIONS } from "../wire/json-integers.js";

export type { ApiDeps, PresenceSource } from "./deps.js";
export { CLOSE_LOGGED_OUT } from "./auth-service.js";
export { clientAddressValues } from "./context.js";
export { ApiLimiter } from "./limits.js";
export { apiMetrics } from "./metrics.js";
export { DeviceGate } from "./device-gate.js";
export { ERROR_CODE_HEADER, RETRY_AFTER_HEADER } from "./errors.js";

/** The public api's JSON reading (STRICT_JSON_OPTIONS): unknown fields and bad UTF-8 refused, ids read exactly. */
export const PUBLIC_API_JSON_OPTIONS = STRICT_JSON_OPTIONS;

/**
 * Registers the public chat.v1 request/response services (SessionService, the
 * realtime stream, lives elsewhere). Serve the router with connectNodeAdapter
 * (Connect, gRPC and gRPC-web protocols).
 */
export function registerPublicApi(router: ConnectRouter, deps: ApiDeps): ConnectRouter {
  const devices = deps.devices ?? new DeviceGate(deps.accounts, { now: deps.now });
  const options = { interceptors: [apiInterceptor({ verifier: deps.verifier, devices, limits: deps.limits, metrics: deps.metrics, logger: deps.logger })] };
  const first = router.handlers.length;
  router
    .service(AuthService, authService(deps, devices), options)
    .service(UserService, userService(deps), options)
    .service(ChannelService, channelService(deps), options)
    .service(MessageService, messageService(deps), options)
    .service(PresenceService, presenceService(deps), options)
    .service(PushService, pushService(deps), options);
  // The adapter serves router.handlers as they are once the routes are registered.
  for (let i = first; i < router.handlers.length; i++) router.handlers[i] = withErrorCodeHeader(router.handlers[i]!);
  deps.metrics?.served(router.handlers.slice(first).map((h) => h.method));
  return router;
}
