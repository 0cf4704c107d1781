import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { AuthService } from "../../gen/es/chat/v1/auth_pb.js";
import { ChannelService } from "../../gen/es/chat/v1/channels_pb.js";
import { MessageService } from "../../gen/es/chat/v1/messages_pb.js";
import { PresenceService } from "../../gen/es/chat/v1/presence_pb.js";
import { PushService } from "../../gen/es/chat/v1/push_pb.js";
import { UserService } from "../../gen/es/chat/v1/users_pb.js";
import type { Auth } from "./auth.js";

export interface Api {
  auth: Client<typeof AuthService>;
  users: Client<typeof UserService>;
  channels: Client<typeof ChannelService>;
  messages: Client<typeof MessageService>;
  presence: Client<typeof PresenceService>;
  push: Client<typeof PushService>;
}

const PUBLIC = new Set(["SignUp", "Login", "Refresh"]);

/**
 * Connect clients on the page's own origin (chatd serves this page). Every
 * authenticated call carries a fresh access token; a call refused because
 * the token expired in flight is sent once more, with the token refreshed
 * unless that happened already since the call took it.
 */
export function createApi(auth: Auth, baseUrl = location.origin): Api {
  const bearer: Interceptor = (next) => async (req) => {
    if (PUBLIC.has(req.method.name)) return next(req);
    const used = await auth.accessToken();
    req.header.set("authorization", `Bearer ${used}`);
    try {
      return await next(req);
    } catch (err) {
      if (!(err instanceof ConnectError) || err.code !== Code.Unauthenticated || errorCode(err) !== "ERROR_CODE_TOKEN_EXPIRED") throw err;
      // Another call refused with the same token may have refreshed it meanwhile. Refreshing again spends a refresh
      // token for nothing, and without Web Locks each refresh is a chance of two tabs spending the same one at once.
      const token = auth.current?.accessToken === used ? (await auth.refresh(true)).accessToken : await auth.accessToken();
      req.header.set("authorization", `Bearer ${token}`);
      return next(req);
    }
  };
  const transport = createConnectTransport({ baseUrl, interceptors: [bearer] });
  return {
    auth: createClient(AuthService, transport),
    users: createClient(UserService, transport),
    channels: createClient(ChannelService, transport),
    messages: createClient(MessageService, transport),
    presence: createClient(PresenceService, transport),
    push: createClient(PushService, transport),
  };
}

/** The stable chat.v1.ErrorCode name the server puts on every error. */
export function errorCode(err: ConnectError): string | undefined {
  return err.metadata.get("chat-error-code") ?? undefined;
}

/** A call refused because the caller is not in the channel (the server says the same when there is no such channel). */
export function notAMember(err: unknown): boolean {
  return err instanceof ConnectError && errorCode(err) === "ERROR_CODE_NOT_A_MEMBER";
}

/** The call did not reach the server, or its answer did not come back: worth asking again later, unlike a refusal. */
export function unreachable(err: unknown): boolean {
  if (!(err instanceof ConnectError)) return true;
  return err.code === Code.Unavailable || err.code === Code.DeadlineExceeded || (err.code === Code.Unknown && /fetch|network/i.test(err.rawMessage));
}

/** A sentence for a person, from whatever a call threw. */
export function describeError(err: unknown): string {
  if (err instanceof ConnectError) {
    if (unreachable(err) && err.code !== Code.DeadlineExceeded) return "The server cannot be reached. Check your connection and try again.";
    // The server's message names the request's fields as the API spells them ("display_name must be 1 to 64 characters"): here they are words.
    return (err.rawMessage || err.message).replace(/\b[a-z]+(?:_[a-z]+)+\b/g, (field) => field.replaceAll("_", " "));
  }
  return err instanceof Error ? err.message : String(err);
}
