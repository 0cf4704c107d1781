import type { IncomingMessage } from "node:http";
import type { Http2ServerRequest } from "node:http2";
import {
  Code,
  createContextKey,
  createContextValues,
  type ConnectError,
  type ContextValues,
  type HandlerContext,
  type Interceptor,
} from "@connectrpc/connect";
import type { Logger } from "pino";
import type { TokenVerifier } from "../auth/tokens.js";
import { ChatError, ContendedError } from "../model/errors.js";
import type { Id } from "../model/types.js";
import { addressKey, lastForwarded } from "../throttle/address.js";
import { toConnectError } from "./errors.js";
import type { DeviceGate } from "./device-gate.js";
import type { ApiLimiter } from "./limits.js";
import { methodLabel, type ApiMetrics } from "./metrics.js";

export interface Caller {
  userId: Id;
  deviceId: Id;
}

const callerKey = createContextKey<Caller | undefined>(undefined, { description: "authenticated caller" });
const clientAddressKey = createContextKey<string>("unknown", { description: "client address, as a rate-limit key" });

/**
 * connectNodeAdapter's `contextValues`: puts the client's address where the
 * limits find it, from the socket or, behind a proxy, from `clientIpHeader`.
 */
export function clientAddressValues(clientIpHeader?: string): (req: IncomingMessage | Http2ServerRequest) => ContextValues {
  return (req) => {
    const forwarded = clientIpHeader ? lastForwarded(req.headers[clientIpHeader]) : undefined;
    return createContextValues().set(clientAddressKey, addressKey(forwarded ?? req.socket?.remoteAddress));
  };
}

export function clientAddress(ctx: HandlerContext): string {
  return ctx.values.get(clientAddressKey);
}

/** Methods reachable without an access token, as "service/Method". */
const PUBLIC_METHODS = new Set(["chat.v1.AuthService/SignUp", "chat.v1.AuthService/Login", "chat.v1.AuthService/Refresh"]);
/**
 * The methods limited per client address: each costs an argon2id hash (two
 * for a password change), and an account's own rate would let every account
 * made run dozens a second. Refresh is not: it costs one lookup, its token
 * cannot be guessed, and every device behind a carrier's NAT refreshes
 * through the same address (one with a token nobody was issued is, in
 * auth-service.ts).
 */
const HASHING_METHODS = new Set([
  "chat.v1.AuthService/SignUp",
  "chat.v1.AuthService/Login",
  "chat.v1.AuthService/ChangePassword",
  "chat.v1.AuthService/DeleteAccount",
]);

/**
 * Checks "authorization: Bearer <token>" on every non-public method (and that
 * its device is still signed in), applies the request rates (per address
 * before a token, per account after), counts calls by method and outcome,
 * and maps whatever a handler throws to a ConnectError (see errors.ts), so
 * handlers just throw ChatError.
 */
export function apiInterceptor(o: {
  verifier: TokenVerifier;
  devices: DeviceGate;
  limits?: ApiLimiter;
  metrics?: ApiMetrics;
  logger?: Logger;
}): Interceptor {
  const { verifier, devices, limits, metrics, logger } = o;
  return (next) => async (req) => {
    if (!metrics) return handle(next, req);
    const method = methodLabel(req.method);
    const stop = metrics.seconds.startTimer({ method });
    try {
      const res = await handle(next, req);
      metrics.requests.inc({ method, code: "ok" });
      return res;
    } catch (e) {
      metrics.requests.inc({ method, code: outcomeOf(e as ConnectError) });
      throw e;
    } finally {
      stop();
    }
  };

  async function handle(next: Parameters<Interceptor>[0], req: Parameters<ReturnType<Interceptor>>[0]) {
    try {
      const name = `${req.service.typeName}/${req.method.name}`;
      if (!PUBLIC_METHODS.has(name)) {
        const c = authenticate(verifier, req.header.get("authorization"));
        // A signed-out device's token (a thief's, say) must not use up its account's allowance.
        await devices.check(c.userId, c.deviceId);
        limits?.takeCall(c.userId);
        req.contextValues.set(callerKey, c);
      }
      if (HASHING_METHODS.has(name)) limits?.takeAuth(req.contextValues.get(clientAddressKey));
      return await next(req);
    } catch (e) {
      throw toConnectError(e, logger);
    }
  }
}

/** "resource_exhausted" for Code.ResourceExhausted: the status as the gRPC and Connect protocols spell it. */
/** A refusal for contention is no failure of the server's: counted apart from "unavailable", which alerts watch. */
function outcomeOf(e: ConnectError): string {
  return e.cause instanceof ContendedError ? "contended" : statusName(e.code);
}

function statusName(code: Code): string {
  return (Code[code] ?? "unknown").replace(/[A-Z]/g, (c, i: number) => (i > 0 ? "_" : "") + c.toLowerCase());
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
