import type { Id } from "../model/types.js";
import type { Held, Origin } from "./held.js";
import type { NotificationVersions } from "./notification-content.js";
import type { PushEndpoint, PushNotification } from "./port.js";

/** One notification on its way to one endpoint: queued, in flight, or waiting for its retry. */
export interface Job {
  endpoint: PushEndpoint;
  origin: Origin;
  /** What it tells of; `heldVersion` the version its notification was built from. */
  held: Held;
  heldVersion: number;
  notification: PushNotification;
  channelId: Id;
  /** When its newest message was sent: the push service holds it for what is left of ttlSeconds since. */
  sentAtMs: number;
  /** Both versions, small: a retry picks the one the device's setting asks for by then. */
  versions: NotificationVersions;
  attempt: number;
  host: string;
  /** When it last joined the queue of jobs ready to go. */
  readyAtMs?: number;
  /** A newer notification of the same chat was made for the device: this one is not sent again. */
  superseded?: boolean;
  /** While waiting for its retry. */
  retryTimer?: NodeJS.Timeout;
}

/** One device, one chat: what a newer notification replaces. */
export function newestKey(job: Job): string {
  return `${job.endpoint.userId}:${job.endpoint.deviceId}:${job.notification.collapseKey}`;
}

/**
 * What a failed send's answer is weighed against (SERVICE_PROVEN_MS): its host, and for APNs
 * the app (topic) too, since our settings can be wrong for one app alone (a key not entitled
 * to its topic: TopicDisallowed for every one of its devices while the other app's deliver).
 */
export function serviceOf(job: Job): string {
  return job.endpoint.kind === "apns" ? `${job.host}:${job.endpoint.apnsTopic}` : job.host;
}

/** One endpoint as its push service knows it: a device registered again at another address is another. */
export function endpointKeyOf(job: Job): string {
  return `${job.host} ${job.endpoint.address}`;
}

export function hostOf(e: PushEndpoint): string {
  if (e.kind !== "web_push") return e.kind;
  try {
    return `web_push:${new URL(e.address).host}`;
  } catch {
    return "web_push:?";
  }
}
