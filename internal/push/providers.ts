import type { Logger } from "pino";
import { ApnsProvider, apnsOptionsFromFiles } from "./apns.js";
import type { PushConfig } from "./config.js";
import { FcmProvider, fcmOptionsFromFile } from "./fcm.js";
import type { PushKind, PushProvider } from "./port.js";
import { loadOrCreateVapidKeys, type VapidKeys } from "./vapid.js";
import { WebPushProvider } from "./webpush.js";

export interface PushProviders {
  providers: Partial<Record<PushKind, PushProvider>>;
  vapid: VapidKeys;
  close(): Promise<void>;
}

/**
 * Web Push is always on (VAPID keys from the environment, or generated once
 * into the data directory); APNs and FCM only when their credentials are
 * configured. Endpoints of an unconfigured kind are refused at registration.
 */
export function createPushProviders(config: PushConfig, logger?: Logger): PushProviders {
  const vapid =
    config.vapidPublicKey && config.vapidPrivateKey
      ? { publicKey: config.vapidPublicKey, privateKey: config.vapidPrivateKey }
      : loadOrCreateVapidKeys(config.vapidKeyFile ?? "vapid.json");
  const providers: Partial<Record<PushKind, PushProvider>> = {
    // chatd, cmd/notifier and cmd/api all build their sender here: one rule for where pushes may go.
    web_push: new WebPushProvider({ vapid, subject: config.vapidSubject, allowLocalEndpoints: config.allowHttpEndpoints }),
  };
  // The logger hears of an APNs connection dropped for an unanswered PING (apns.ts).
  if (config.apns) providers.apns = new ApnsProvider({ ...apnsOptionsFromFiles(config.apns), logger: logger?.child({ component: "apns" }) });
  if (config.fcm) providers.fcm = new FcmProvider(fcmOptionsFromFile(config.fcm));
  return {
    providers,
    vapid,
    close: async () => {
      await Promise.all(Object.values(providers).map((p) => p?.close?.()));
    },
  };
}
