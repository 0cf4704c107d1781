import { existsSync, linkSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { dirname } from "node:path";
import webpush from "web-push";
import { flushDirSync, unusableKeyFile, writeFlushedSync } from "../config/key-files.js";

export interface VapidKeys {
  /** Base64url, uncompressed P-256 point: what browsers pass to PushManager.subscribe. */
  publicKey: string;
  privateKey: string;
}

/**
 * Loads the VAPID key pair from `path`, generating and saving it (mode 0600)
 * the first time. The keys must never change once browsers subscribed with
 * them: a new public key silently invalidates every subscription.
 */
export function loadOrCreateVapidKeys(path: string): VapidKeys {
  if (existsSync(path)) {
    let keys: Partial<VapidKeys>;
    try {
      keys = JSON.parse(readFileSync(path, "utf8")) as Partial<VapidKeys>;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== undefined) throw e;
      throw unusableKeyFile(path, "a VAPID key file", e);
    }
    if (typeof keys?.publicKey !== "string" || typeof keys.privateKey !== "string") throw unusableKeyFile(path, "a VAPID key file", "no publicKey and privateKey");
    return { publicKey: keys.publicKey, privateKey: keys.privateKey };
  }
  const keys = webpush.generateVAPIDKeys();
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.tmp`;
  writeFlushedSync(tmp, JSON.stringify({ publicKey: keys.publicKey, privateKey: keys.privateKey }, null, 2));
  // link, not rename: when several processes (api, notifier) start on one
  // keys directory at once, the first file wins and the others read it.
  try {
    linkSync(tmp, path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
    return loadOrCreateVapidKeys(path);
  } finally {
    rmSync(tmp, { force: true });
  }
  flushDirSync(dirname(path));
  return { publicKey: keys.publicKey, privateKey: keys.privateKey };
}
