/**
 * Browser notifications of this device: a service worker (public/sw.js)
 * subscribed with the browser's push service, whose address chatd's
 * notifier posts to when none of the user's devices is connected.
 */

import type { MessageInitShape } from "@bufbuild/protobuf";
import type { RegisterPushEndpointRequestSchema } from "../../gen/es/chat/v1/push_pb.js";
import { describeError, type Api } from "./api.js";

/** What the bell shows. */
export type PushState = "unsupported" | "off" | "on" | "blocked" | "error";

export type PushSupport = { supported: true } | { supported: false; reason: string };

type PushApi = Pick<Api, "push">;

type RegisterRequest = MessageInitShape<typeof RegisterPushEndpointRequestSchema>;

/** A failure a person can act on: the state the bell should show, and a sentence saying why. */
export class PushError extends Error {
  constructor(
    readonly state: Exclude<PushState, "on">,
    message: string,
  ) {
    super(message);
    this.name = "PushError";
  }
}

/** The worker's URL, relative to the page, so it lands at /sw.js with the scope "/". */
const WORKER_URL = "./sw.js";

const BLOCKED = "Notifications are blocked for this site in the browser's settings. Allow them there, then click the bell again.";

export function pushSupport(): PushSupport {
  if (!window.isSecureContext) return { supported: false, reason: "Notifications need a secure connection (https) to this site." };
  if (!("serviceWorker" in navigator) || !("PushManager" in window) || !("Notification" in window)) {
    return { supported: false, reason: "This browser cannot show notifications from websites." };
  }
  return { supported: true };
}

/** What the bell shows before anything is asked of the browser or the server. */
export function initialPushState(): PushState {
  if (!pushSupport().supported) return "unsupported";
  return Notification.permission === "denied" ? "blocked" : "off";
}

/**
 * Turns notifications on for this device. Must run from a click: browsers
 * only show the permission prompt for one. Throws a PushError.
 */
export async function enablePush(api: PushApi): Promise<"on"> {
  const support = pushSupport();
  if (!support.supported) throw new PushError("unsupported", support.reason);
  // Asked before anything is awaited, while the click still counts as one.
  const permission = await Notification.requestPermission();
  if (permission === "denied") throw new PushError("blocked", BLOCKED);
  if (permission !== "granted") throw new PushError("off", "Notifications stay off: the browser was not allowed to show them.");
  const registration = await installWorker();
  const key = await serverKey(api);
  let subscription = await registration.pushManager.getSubscription();
  if (subscription && !sameKey(subscription.options.applicationServerKey, key)) {
    // Subscribed for another server key: a browser refuses a second key, and pushes signed with the new one would be rejected.
    await unsubscribe(subscription);
    subscription = null;
  }
  subscription ??= await subscribe(registration, key);
  try {
    await register(api, subscription);
  } catch (err) {
    // Else the next start would find a subscription the server never took, and show "on".
    await subscription.unsubscribe().catch(() => false);
    throw err;
  }
  return "on";
}

/**
 * At start, when notifications were turned on before: registers this
 * browser's subscription again, because each sign-in is a new device for
 * the server. Never prompts. Throws a PushError.
 */
export async function refreshPush(api: PushApi): Promise<PushState> {
  const state = initialPushState();
  if (state !== "off" || Notification.permission !== "granted") return state;
  // Registering again also fetches a changed worker.
  const registration = await installWorker();
  const subscription = await registration.pushManager.getSubscription();
  if (!subscription) return "off";
  const key = await serverKey(api);
  // The server's key changed: the old subscription can never be pushed to again.
  const current = sameKey(subscription.options.applicationServerKey, key) ? subscription : await resubscribe(registration, subscription, key);
  await register(api, current);
  return "on";
}

/**
 * Turns notifications off for this device: the server forgets the address
 * (best effort: an address whose subscription is gone answers 410, and the
 * notifier drops it then), and the browser drops the subscription.
 */
export async function disablePush(api: PushApi): Promise<"off"> {
  const subscription = await currentSubscription();
  if (!subscription) return "off";
  await api.push.unregisterPushEndpoint({}).catch(() => undefined);
  await unsubscribe(subscription);
  return "off";
}

/**
 * Drops the browser's subscription without telling the server: for a
 * device the server signed out, whose tokens no longer work (the server
 * removed its endpoint already).
 */
export async function forgetPush(): Promise<void> {
  const subscription = await currentSubscription().catch(() => null);
  if (subscription) await subscription.unsubscribe().catch(() => false);
}

// ---------------------------------------------------------------- pure helpers

/** The bytes of a base64url string (with or without padding), as the VAPID key is given. */
export function base64urlToBytes(text: string): Uint8Array<ArrayBuffer> {
  if (!/^[A-Za-z0-9_-]*={0,2}$/.test(text)) throw new Error("not base64url");
  const base64 = text.replace(/=+$/, "").replace(/-/g, "+").replace(/_/g, "/");
  const binary = atob(base64.padEnd(Math.ceil(base64.length / 4) * 4, "="));
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/** Whether a subscription's key (as the browser keeps it) is this one. */
export function sameKey(held: ArrayBuffer | null, key: Uint8Array): boolean {
  if (!held || held.byteLength !== key.length) return false;
  const a = new Uint8Array(held);
  return a.every((b, i) => b === key[i]);
}

/** RegisterPushEndpoint's request for a subscription (its toJSON()). */
export function registerRequest(subscription: PushSubscriptionJSON): RegisterRequest {
  const { endpoint, keys } = subscription;
  if (!endpoint || !keys?.p256dh || !keys.auth) throw new Error("the browser's subscription has no endpoint or keys");
  return { endpoint: { case: "webPush", value: { endpoint, p256dh: keys.p256dh, auth: keys.auth } } };
}

/** The chat a message from the service worker asks to open (sw.js, after a notification click). */
export function chatToOpen(message: unknown): bigint | undefined {
  if (typeof message !== "object" || message === null) return undefined;
  const { type, channelId } = message as { type?: unknown; channelId?: unknown };
  return type === "open-chat" && typeof channelId === "string" && /^\d{1,20}$/.test(channelId) ? BigInt(channelId) : undefined;
}

// ---------------------------------------------------------------- steps

async function installWorker(): Promise<ServiceWorkerRegistration> {
  try {
    await navigator.serviceWorker.register(WORKER_URL);
    // The active worker: a new one may still be installing, and subscribing needs one that is active.
    return await navigator.serviceWorker.ready;
  } catch (err) {
    throw new PushError("error", `The browser could not install this site's notification worker: ${reason(err)}`);
  }
}

async function currentSubscription(): Promise<PushSubscription | null> {
  if (!pushSupport().supported) return null;
  const registration = await navigator.serviceWorker.getRegistration();
  return (await registration?.pushManager.getSubscription()) ?? null;
}

async function serverKey(api: PushApi): Promise<Uint8Array<ArrayBuffer>> {
  let publicKey: string;
  try {
    publicKey = (await api.push.getVapidPublicKey({})).publicKey;
  } catch (err) {
    throw new PushError("error", `This server cannot send notifications: ${sentence(describeError(err))}`);
  }
  try {
    return base64urlToBytes(publicKey);
  } catch {
    throw new PushError("error", "This server cannot send notifications: its push key is not valid.");
  }
}

async function subscribe(registration: ServiceWorkerRegistration, key: Uint8Array<ArrayBuffer>): Promise<PushSubscription> {
  try {
    return await registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key });
  } catch (err) {
    if (err instanceof DOMException && err.name === "NotAllowedError") throw new PushError("blocked", BLOCKED);
    throw new PushError("error", `The browser's push service could not be reached: ${reason(err)}`);
  }
}

async function resubscribe(registration: ServiceWorkerRegistration, old: PushSubscription, key: Uint8Array<ArrayBuffer>): Promise<PushSubscription> {
  await unsubscribe(old);
  return subscribe(registration, key);
}

async function unsubscribe(subscription: PushSubscription): Promise<void> {
  try {
    await subscription.unsubscribe();
  } catch (err) {
    throw new PushError("error", `The browser could not turn notifications off: ${reason(err)}`);
  }
}

async function register(api: PushApi, subscription: PushSubscription): Promise<void> {
  try {
    await api.push.registerPushEndpoint(registerRequest(subscription.toJSON()));
  } catch (err) {
    throw new PushError("error", `The server did not take this browser's push address: ${sentence(describeError(err))}`);
  }
}

/** The browser's words for a failure, ending as a sentence does. */
function reason(err: unknown): string {
  return sentence(err instanceof Error ? err.message : String(err));
}

function sentence(text: string): string {
  return /[.!?]$/.test(text) ? text : `${text}.`;
}

/** Any failure as a PushError: one of ours as it is, anything else as an error with its message. */
export function pushFailure(err: unknown): PushError {
  return err instanceof PushError ? err : new PushError("error", `Notifications could not be changed: ${reason(err)}`);
}
