import type { EnvReader } from "../config/env.js";
import type { NotifierOptions } from "./notifier.js";

export interface PushConfig {
  /** "mailto:..." or "https://..." sent in VAPID tokens. */
  vapidSubject: string;
  /** Both set: these keys; otherwise generated once and kept in vapidKeyFile. */
  vapidPublicKey: string;
  vapidPrivateKey: string;
  /** Where generated VAPID keys are kept; chatd uses <data dir>/vapid.json. */
  vapidKeyFile?: string;
  /**
   * CHAT_PUSH_ALLOW_HTTP: accept and send to insecure local Web Push
   * endpoints (http://, loopback and private addresses, any port), for
   * local testing only. Off, endpoints must be public https services on
   * 443, checked at registration and again after DNS when sending.
   */
  allowHttpEndpoints: boolean;
  apns?: { keyFile: string; keyId: string; teamId: string; topic: string; url: string };
  fcm?: { serviceAccountFile: string; url: string };
  notifier: Partial<NotifierOptions>;
}

const bool = (r: EnvReader, name: string) => r.oneOf(name, "false", ["true", "false", "1", "0"] as const) as string;

/** Reads the CHAT_VAPID_*, CHAT_PUSH_*, CHAT_APNS_* and CHAT_FCM_* variables (documented in the README). */
export function readPushConfig(r: EnvReader): PushConfig {
  const apnsKeyFile = r.string("CHAT_APNS_KEY_FILE", "");
  const apns = {
    keyFile: apnsKeyFile,
    keyId: r.string("CHAT_APNS_KEY_ID", ""),
    teamId: r.string("CHAT_APNS_TEAM_ID", ""),
    topic: r.string("CHAT_APNS_TOPIC", ""),
    url: r.string("CHAT_APNS_URL", "https://api.push.apple.com"),
  };
  if (apnsKeyFile && (!apns.keyId || !apns.teamId)) {
    r.problems.push("CHAT_APNS_KEY_FILE is set: CHAT_APNS_KEY_ID and CHAT_APNS_TEAM_ID are needed too");
  }
  const fcmFile = r.string("CHAT_FCM_SERVICE_ACCOUNT_FILE", "");
  const config: PushConfig = {
    vapidSubject: r.string("CHAT_VAPID_SUBJECT", "mailto:admin@localhost"),
    vapidPublicKey: r.string("CHAT_VAPID_PUBLIC_KEY", ""),
    vapidPrivateKey: r.string("CHAT_VAPID_PRIVATE_KEY", ""),
    allowHttpEndpoints: ["true", "1"].includes(bool(r, "CHAT_PUSH_ALLOW_HTTP")),
    apns: apnsKeyFile ? apns : undefined,
    fcm: fcmFile ? { serviceAccountFile: fcmFile, url: r.string("CHAT_FCM_URL", "https://fcm.googleapis.com") } : undefined,
    notifier: {
      collapseWindowMs: r.int("CHAT_PUSH_COLLAPSE_MS", 2_000, 0, 60_000),
      timeoutMs: r.int("CHAT_PUSH_TIMEOUT_MS", 10_000, 100, 120_000),
      concurrency: r.int("CHAT_PUSH_CONCURRENCY", 64, 1, 10_000),
      maxAttempts: r.int("CHAT_PUSH_MAX_ATTEMPTS", 5, 1, 20),
      backoffBaseMs: r.int("CHAT_PUSH_BACKOFF_MS", 1_000, 10, 600_000),
    },
  };
  if (!/^(mailto:|https:\/\/)/.test(config.vapidSubject)) {
    r.problems.push(`CHAT_VAPID_SUBJECT=${JSON.stringify(config.vapidSubject)}: must be a mailto: or https:// URL`);
  }
  if (Boolean(config.vapidPublicKey) !== Boolean(config.vapidPrivateKey)) {
    r.problems.push("CHAT_VAPID_PUBLIC_KEY and CHAT_VAPID_PRIVATE_KEY go together: set both or neither");
  }
  return config;
}
