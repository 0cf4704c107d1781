import { createContextKey, type HandlerContext, type Interceptor } from "@connectrpc/connect";
import type { Logger } from "pino";
import type { TokenVerifier } from "../auth/tokens.js";
import { ChatError } from "../model/errors.js";
import type { Id } from "../model/types.js";
import { toConnectError } from "./errors.js";

export interface Caller {
  userId: Id;
  deviceId: Id;
}

const callerKey = createContextKey<Caller | undefined>(undefined, { description: "authenticated caller" });

/** Methods reachable without an access token, as "service/Method". */
const PUBLIC_METHODS = new Set(["chat.v1.AuthService/SignUp", "chat.v1.AuthService/Login", "chat.v1.AuthService/Refresh"]);

/**
 * Checks "authorization: Bearer <token>" on every non-public method and maps
 * whatever a handler throws to a ConnectError (see errors.ts), so handlers
 * just throw ChatError.
 */
export function apiInterceptor(verifier: TokenVerifier, logger?: Logger): Interceptor {
  return (next) => async (req) => {
    try {
      if (!PUBLIC_METHODS.has(`${req.service.typeName}/${req.method.name}`)) {
        req.contextValues.set(callerKey, authenticate(verifier, req.header.get("authorization")));
      }
      return await next(req);
    } catch (e) {
      throw toConnectError(e, logger);
    }
  };
}

function authenticate(verifier: TokenVerifier, header: string | null): Caller {
  if (!header) throw new ChatError("unauthenticated", 'missing "authorization: Bearer <access token>" header');
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!m) throw new ChatError("unauthenticated", 'authorization header must be "Bearer <access token>"');
  const claims = verifier.verify(m[1]!);
  return { userId: claims.userId, deviceId: claims.deviceId };
}

/** The authenticated caller; only public methods run without one. */
export function caller(ctx: HandlerContext): Caller {
  const c = ctx.values.get(callerKey);
  if (!c) throw new ChatError("unauthenticated", "this method needs an access token");
  return c;
}
