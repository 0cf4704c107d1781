import type { PushEndpoint, PushNotification } from "../../internal/push/port.js";

/** An endpoint of user 1's device 2 with every field a provider reads, and `over` in place of any. */
export const pushEndpoint = (over: Partial<PushEndpoint> = {}): PushEndpoint => ({
  userId: 1n,
  deviceId: 2n,
  kind: "web_push",
  address: "",
  p256dh: "",
  auth: "",
  apnsTopic: "",
  hidePreview: false,
  muted: false,
  updatedAtMs: 0,
  ...over,
});

/** A notification with a preview, for tests of how it travels rather than what it says. */
export const aNotification: PushNotification = { collapseKey: "c1", title: "t", body: "b", ttlSeconds: 60, data: {} };
