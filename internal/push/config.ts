import { createECDH } from "node:crypto";
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
}

/** A role that sends pushes (chatd, the notifier): the credentials and how its notifier sends. */
export interface NotifierPushConfig extends PushConfig {
  notifier: Partial<NotifierOptions>;
}

const bool = (r: EnvReader, name: string) => r.oneOf(name, "false", ["true", "false", "1", "0"] as const) as string;

/**
 * Reads the CHAT_VAPID_*, CHAT_PUSH_ALLOW_HTTP, CHAT_APNS_* and CHAT_FCM_* variables (documented in
 * the README): what registering endpoints needs (the api) as well as sending.
 */
export function readPushConfig(r: EnvReader): PushConfig {
  const apnsKeyFile = r.string("CHAT_APNS_KEY_FILE", "");
  const apns = {
    keyFile: apnsKeyFile,
    keyId: r.string("CHAT_APNS_KEY_ID", ""),
    teamId: r.string("CHAT_APNS_TEAM_ID", ""),
    topic: r.string("CHAT_APNS_TOPIC", ""),
    url: serviceOrigin(r, "CHAT_APNS_URL", "https://api.push.apple.com"),
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
    fcm: fcmFile ? { serviceAccountFile: fcmFile, url: serviceOrigin(r, "CHAT_FCM_URL", "https://fcm.googleapis.com") } : undefined,
  };
  if (!/^(mailto:|https:\/\/)/.test(config.vapidSubject)) {
    r.problems.push(`CHAT_VAPID_SUBJECT=${JSON.stringify(config.vapidSubject)}: must be a mailto: or https:// URL`);
  }
  if (Boolean(config.vapidPublicKey) !== Boolean(config.vapidPrivateKey)) {
    r.problems.push("CHAT_VAPID_PUBLIC_KEY and CHAT_VAPID_PRIVATE_KEY go together: set both or neither");
  } else if (config.vapidPublicKey) {
    const problem = vapidPairProblem(config.vapidPublicKey, config.vapidPrivateKey);
    if (problem) r.problems.push(problem);
  }
  return config;
}

/**
 * A push service's origin (scheme, host, port). Unchecked, a typo started the
 * process and failed only at the first push, minutes or days later, and a
 * path was dropped by APNs' HTTP/2 connect or doubled a slash in FCM's.
 * Plain http stays allowed for a local stand-in.
 */
function serviceOrigin(r: EnvReader, name: string, fallback: string): string {
  const raw = r.string(name, fallback);
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    r.problems.push(`${name}=${JSON.stringify(raw)}: not a URL (expected e.g. ${fallback})`);
    return fallback;
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    r.problems.push(`${name}=${JSON.stringify(raw)}: must be an https:// (or http:// for a local stand-in) URL`);
  } else if (url.pathname !== "/" || url.search || url.hash || url.username || url.password) {
    r.problems.push(`${name}=${JSON.stringify(raw)}: must be the service's origin alone, with no path, query or credentials (e.g. ${fallback})`);
  }
  return url.origin;
}

/**
 * readPushConfig's settings and the notifier's own (CHAT_PUSH_COLLAPSE_MS, _TIMEOUT_MS,
 * _CONCURRENCY, _MAX_ATTEMPTS, _BACKOFF_MS), for the roles that send pushes; the api, which
 * only registers endpoints, reads none of the latter.
 */
export function readNotifierPushConfig(r: EnvReader): NotifierPushConfig {
  return {
    ...readPushConfig(r),
    notifier: {
      collapseWindowMs: r.int("CHAT_PUSH_COLLAPSE_MS", 2_000, 0, 60_000),
      timeoutMs: r.int("CHAT_PUSH_TIMEOUT_MS", 10_000, 100, 120_000),
      concurrency: r.int("CHAT_PUSH_CONCURRENCY", 64, 1, 10_000),
      maxAttempts: r.int("CHAT_PUSH_MAX_ATTEMPTS", 5, 1, 20),
      backoffBaseMs: r.int("CHAT_PUSH_BACKOFF_MS", 1_000, 10, 600_000),
    },
  };
}

/**
 * Why CHAT_VAPID_PUBLIC_KEY and CHAT_VAPID_PRIVATE_KEY are no VAPID key pair,
 * or undefined. Unchecked, a key with padding or '+' and '/' (base64, not
 * base64url), the two swapped or from different pairs started the process,
 * and every Web Push then failed, or browsers subscribed with a key no push
 * could be signed for.
 */
function vapidPairProblem(publicKey: string, privateKey: string): string | undefined {
  const base64url = /^[A-Za-z0-9_-]+$/;
  for (const [name, value] of [["CHAT_VAPID_PUBLIC_KEY", publicKey], ["CHAT_VAPID_PRIVATE_KEY", privateKey]] as const) {
    if (!base64url.test(value)) return `${name}: expected base64url without padding (A-Z, a-z, 0-9, '-' and '_'), as web-push generate-vapid-keys prints it`;
  }
  const pub = Buffer.from(publicKey, "base64url");
  const priv = Buffer.from(privateKey, "base64url");
  if (pub.length !== 65 || pub[0] !== 4) return `CHAT_VAPID_PUBLIC_KEY: expected an uncompressed P-256 public key (65 bytes), got ${pub.length} bytes${priv.length === 65 ? "; are the two keys swapped?" : ""}`;
  if (priv.length !== 32) return `CHAT_VAPID_PRIVATE_KEY: expected a P-256 private key (32 bytes), got ${priv.length} bytes`;
  try {
    const ecdh = createECDH("prime256v1");
    ecdh.setPrivateKey(priv);
    if (!ecdh.getPublicKey().equals(pub)) return "CHAT_VAPID_PUBLIC_KEY, CHAT_VAPID_PRIVATE_KEY: not one key pair (the public key is not the private key's)";
  } catch {
    return "CHAT_VAPID_PRIVATE_KEY: not a valid P-256 private key";
  }
  return undefined;
}
