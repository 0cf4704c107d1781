import { createPublicKey } from "node:crypto";
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { PushService, type RegisterPushEndpointRequest } from "../../gen/es/chat/v1/push_pb.js";
import { isRevoked } from "../accounts/store.js";
import { ChatError } from "../model/errors.js";
import { webPushEndpointProblem } from "../push/endpoint-rule.js";
import type { PushEndpoint, PushEndpointStore, PushKind, PushSettings } from "../push/port.js";
import { caller } from "./context.js";
import type { ApiDeps } from "./deps.js";

/** What PushService needs; without it every method answers Unimplemented. */
export interface PushApi {
  endpoints: PushEndpointStore;
  /** Kinds with a configured provider; others are refused with FailedPrecondition. */
  enabled: ReadonlySet<PushKind>;
  /** For GetVapidPublicKey (Web Push). */
  vapidPublicKey?: string;
  /** Accept http://, loopback and private Web Push endpoints (CHAT_PUSH_ALLOW_HTTP: tests and local setups only). */
  allowHttpEndpoints?: boolean;
  /** apns-topic used when a token is registered without one. */
  defaultApnsTopic?: string;
}

export interface PushApiDeps {
  push?: PushApi;
}

const KIND_NAME: Record<PushKind, string> = { web_push: "Web Push", apns: "APNs", fcm: "FCM" };

function invalid(message: string): never {
  throw new ChatError("invalid_argument", message);
}

/**
 * Push endpoint registration, one endpoint per device (the caller's). The
 * notifier reads them when a user has no device online.
 */
export function pushService(deps: ApiDeps & PushApiDeps): Partial<ServiceImpl<typeof PushService>> {
  const push = deps.push;
  if (!push) {
    const unimplemented = (_req: unknown, ctx: HandlerContext): never => {
      caller(ctx);
      throw new ConnectError("push notifications are not available on this server", Code.Unimplemented);
    };
    return {
      registerPushEndpoint: unimplemented,
      unregisterPushEndpoint: unimplemented,
      updatePushSettings: unimplemented,
      getVapidPublicKey: unimplemented,
    };
  }
  const now = deps.now ?? Date.now;
  const requireKind = (kind: PushKind) => {
    if (!push.enabled.has(kind)) {
      throw new ConnectError(`${KIND_NAME[kind]} push is not configured on this server`, Code.FailedPrecondition);
    }
  };
  const settingsOf = (s?: { hidePreview: boolean; muted: boolean }): PushSettings => ({ hidePreview: s?.hidePreview ?? false, muted: s?.muted ?? false });

  return {
    async registerPushEndpoint(req, ctx) {
      const me = caller(ctx);
      const fields = validateEndpoint(req, push);
      requireKind(fields.kind);
      // Without settings the device keeps those it has: the web client
      // registers again at every start and must not undo "muted" or "no preview".
      const kept = req.settings ? undefined : await push.endpoints.get(me.userId, me.deviceId);
      const settings = settingsOf(req.settings ?? kept);
      const endpoint: PushEndpoint = { userId: me.userId, deviceId: me.deviceId, ...settings, updatedAtMs: now(), ...fields };
      await push.endpoints.put(endpoint);
      // Its token was checked before the write, and a sign-out (on another api process, or racing this
      // one) may have removed the device's endpoint meanwhile: this one would then stay, for good with
      // a deleted account. The sign-out revokes before it removes, so either it finds this endpoint or
      // this read finds the device signed out.
      if (await isRevoked(deps.accounts, me.userId, me.deviceId)) {
        await push.endpoints.removeIfAddress(me.userId, me.deviceId, endpoint.address);
        throw new ChatError("unauthenticated", "this device is signed out; sign in again");
      }
      return {};
    },

    async unregisterPushEndpoint(_req, ctx) {
      const me = caller(ctx);
      await push.endpoints.remove(me.userId, me.deviceId);
      return {};
    },

    async updatePushSettings(req, ctx) {
      const me = caller(ctx);
      // Not read as both false: a call that forgot them would unmute the device.
      if (!req.settings) invalid("settings is required (hide_preview and muted, both as they should be)");
      const settings = settingsOf(req.settings);
      // The settings it has already: no write, its time stays.
      const current = await push.endpoints.get(me.userId, me.deviceId);
      if (current && current.hidePreview === settings.hidePreview && current.muted === settings.muted) return {};
      const ok = current !== undefined && (await push.endpoints.updateSettings(me.userId, me.deviceId, settings, now()));
      if (!ok) throw new ChatError("not_found", "this device has no push endpoint: register one first");
      return {};
    },

    async getVapidPublicKey(_req, ctx) {
      caller(ctx);
      requireKind("web_push");
      if (!push.vapidPublicKey) throw new ConnectError("Web Push is not configured on this server", Code.FailedPrecondition);
      return { publicKey: push.vapidPublicKey };
    },
  };
}

type EndpointFields = Pick<PushEndpoint, "kind" | "address" | "p256dh" | "auth" | "apnsTopic">;

function validateEndpoint(req: RegisterPushEndpointRequest, push: PushApi): EndpointFields {
  const e = req.endpoint;
  switch (e.case) {
    case "webPush": {
      const { endpoint, p256dh, auth } = e.value;
      if (endpoint.length > 2048) invalid("web_push.endpoint must be at most 2048 characters");
      let url: URL;
      try {
        url = new URL(endpoint);
      } catch {
        invalid("web_push.endpoint must be an absolute URL");
      }
      // The notifier POSTs to this URL from inside our network: only public push services pass.
      const problem = webPushEndpointProblem(url, push.allowHttpEndpoints === true);
      if (problem) invalid(`web_push.endpoint ${problem}`);
      const key = base64url("web_push.p256dh", p256dh);
      if (key.length !== 65 || key[0] !== 0x04) invalid("web_push.p256dh must be an uncompressed P-256 public key (65 bytes, base64url)");
      try {
        createPublicKey({
          key: { kty: "EC", crv: "P-256", x: key.subarray(1, 33).toString("base64url"), y: key.subarray(33).toString("base64url") },
          format: "jwk",
        });
      } catch {
        invalid("web_push.p256dh is not a point on P-256");
      }
      if (base64url("web_push.auth", auth).length !== 16) invalid("web_push.auth must be 16 bytes, base64url");
      return { kind: "web_push", address: url.toString(), p256dh: key.toString("base64url"), auth, apnsTopic: "" };
    }
    case "apns": {
      const { deviceToken, topic } = e.value;
      if (!/^[0-9a-fA-F]{64,200}$/.test(deviceToken)) invalid("apns.device_token must be 64 to 200 hex digits");
      if (topic.length > 255 || /\s/.test(topic)) invalid("apns.topic must be a bundle id (at most 255 characters, no spaces)");
      if (!topic && !push.defaultApnsTopic && push.enabled.has("apns")) invalid("apns.topic is required (this server has no default)");
      return { kind: "apns", address: deviceToken.toLowerCase(), p256dh: "", auth: "", apnsTopic: topic };
    }
    case "fcm": {
      const token = e.value.registrationToken;
      if (token.length < 1 || token.length > 4096 || /[\s]/.test(token)) invalid("fcm.registration_token must be 1 to 4096 characters without spaces");
      return { kind: "fcm", address: token, p256dh: "", auth: "", apnsTopic: "" };
    }
    default:
      invalid("an endpoint is required: web_push, apns or fcm");
  }
}

function base64url(field: string, s: string): Buffer {
  if (!/^[A-Za-z0-9_-]+={0,2}$/.test(s)) invalid(`${field} must be base64url`);
  return Buffer.from(s.replace(/=+$/, ""), "base64url");
}
