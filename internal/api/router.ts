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
import { quoteUnsafeIntegers } from "../wire/json-integers.js";

export type { ApiDeps, PresenceSource } from "./deps.js";
export { CLOSE_LOGGED_OUT } from "./auth-service.js";
export { clientAddressValues } from "./context.js";
export { ApiLimiter } from "./limits.js";
export { apiMetrics } from "./metrics.js";
export { DeviceGate } from "./device-gate.js";
export { ERROR_CODE_HEADER, RETRY_AFTER_HEADER } from "./errors.js";

const UTF8 = new TextDecoder("utf-8", { fatal: true });

/**
 * JSON options for connectNodeAdapter: a field the request message does not
 * have, most often a misspelled one, is refused as invalid_argument naming
 * the key, rather than dropped so that the call does something else than
 * asked (connect-es ignores unknown fields by default). Clients built from
 * the same protos never send one; binary requests are not affected. A body
 * that is not UTF-8 is refused too, as a binary one is: read leniently, its
 * bad bytes became U+FFFD and were stored as such (a name, a message). An id
 * written as a JSON number is read exactly (quoteUnsafeIntegers), not rounded.
 */
export const PUBLIC_API_JSON_OPTIONS = { ignoreUnknownFields: false, textDecoder: { decode: (bytes?: Uint8Array) => quoteUnsafeIntegers(UTF8.decode(bytes)) } } as const;

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
  return router;
}
