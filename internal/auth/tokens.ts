import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  randomBytes,
  sign,
  verify,
  type KeyObject,
} from "node:crypto";
import { mkdir, readFile, rename, rm, link } from "node:fs/promises";
import { join } from "node:path";
import { flushDir, unusableKeyFile, writeFlushed } from "../config/key-files.js";
import { monotonicNow } from "../model/clock.js";
import { ChatError } from "../model/errors.js";
import type { Id } from "../model/types.js";

/**
 * Access tokens are Ed25519-signed and self-contained, so the gateway checks
 * them on the WebSocket handshake with the public key alone, no store round
 * trip. The price is that a revoked device keeps a working access token until
 * it expires (15 minutes by default); revocation also closes its live
 * sessions and refuses its next refresh.
 *
 * Format: base64url(JSON payload) "." base64url(signature over the first part).
 * Payload: { kid, sub: user id, dev: device id, iat, exp } with ids as decimal
 * strings and times in epoch milliseconds.
 */
export const ACCESS_TOKEN_TTL_MS = 15 * 60_000;

export interface AccessClaims {
  userId: Id;
  deviceId: Id;
  issuedAtMs: number;
  expiresAtMs: number;
  keyId: string;
}

export interface TokenKeys {
  privateKey: KeyObject;
  publicKey: KeyObject;
  keyId: string;
}

interface Payload {
  kid: string;
  sub: string;
  dev: string;
  iat: number;
  exp: number;
}

/** A short stable name of a public key: lets verifiers hold several keys during a rotation. */
export function keyIdOf(publicKey: KeyObject): string {
  const der = publicKey.export({ format: "der", type: "spki" });
  return createHash("sha256").update(der).digest("base64url").slice(0, 11);
}

export class TokenSigner {
  /** How long an access token it signs is valid. */
  readonly ttlMs: number;
  private readonly now: () => number;

  constructor(
    private readonly keys: Pick<TokenKeys, "privateKey" | "keyId">,
    options: { ttlMs?: number; now?: () => number } = {},
  ) {
    if (keys.privateKey.asymmetricKeyType !== "ed25519") throw new TypeError("token signing key must be Ed25519");
    this.ttlMs = options.ttlMs ?? ACCESS_TOKEN_TTL_MS;
    this.now = options.now ?? Date.now;
  }

  sign(subject: { userId: Id; deviceId: Id }): { token: string; claims: AccessClaims } {
    const iat = this.now();
    const payload: Payload = {
      kid: this.keys.keyId,
      sub: subject.userId.toString(),
      dev: subject.deviceId.toString(),
      iat,
      exp: iat + this.ttlMs,
    };
    const body = Buffer.from(JSON.stringify(payload)).toString("base64url");
    const sig = sign(null, Buffer.from(body), this.keys.privateKey).toString("base64url");
    return {
      token: `${body}.${sig}`,
      claims: { userId: subject.userId, deviceId: subject.deviceId, issuedAtMs: iat, expiresAtMs: payload.exp, keyId: payload.kid },
    };
  }
}

export class TokenVerifier {
  private readonly keys = new Map<string, KeyObject>();
  private readonly now: () => number;

  /** Accepts tokens signed by any of the given public keys. */
  constructor(publicKeys: KeyObject | readonly KeyObject[], options: { now?: () => number } = {}) {
    for (const key of Array.isArray(publicKeys) ? publicKeys : [publicKeys as KeyObject]) {
      if (key.asymmetricKeyType !== "ed25519") throw new TypeError("token verification key must be Ed25519");
      // A private key works too: verification only needs its public half.
      const pub = key.type === "private" ? createPublicKey(key) : key;
      this.keys.set(keyIdOf(pub), pub);
    }
    this.now = options.now ?? Date.now;
  }

  /** Throws ChatError "unauthenticated" (malformed, forged, unknown key) or "token_expired". */
  verify(token: string): AccessClaims {
    const dot = token.indexOf(".");
    if (dot <= 0 || dot !== token.lastIndexOf(".") || token.length > 1024) {
      throw new ChatError("unauthenticated", "malformed access token");
    }
    const body = token.slice(0, dot);
    let payload: Payload;
    try {
      payload = JSON.parse(Buffer.from(body, "base64url").toString("utf8")) as Payload;
    } catch {
      throw new ChatError("unauthenticated", "malformed access token");
    }
    if (
      typeof payload !== "object" || payload === null ||
      typeof payload.kid !== "string" || typeof payload.sub !== "string" || typeof payload.dev !== "string" ||
      !Number.isFinite(payload.iat) || !Number.isFinite(payload.exp) ||
      !/^[1-9][0-9]{0,19}$/.test(payload.sub) || !/^[1-9][0-9]{0,19}$/.test(payload.dev)
    ) {
      throw new ChatError("unauthenticated", "malformed access token");
    }
    const key = this.keys.get(payload.kid);
    if (!key) throw new ChatError("unauthenticated", "access token signed by an unknown key");
    if (!verify(null, Buffer.from(body), key, Buffer.from(token.slice(dot + 1), "base64url"))) {
      throw new ChatError("unauthenticated", "access token has a bad signature");
    }
    // Checked after the signature so that a forged token never learns more than "bad".
    if (payload.exp <= this.now()) {
      throw new ChatError("token_expired", "access token expired; refresh it and retry");
    }
    return {
      userId: BigInt(payload.sub),
      deviceId: BigInt(payload.dev),
      issuedAtMs: payload.iat,
      expiresAtMs: payload.exp,
      keyId: payload.kid,
    };
  }
}

export function generateKeys(): TokenKeys {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  return { privateKey, publicKey, keyId: keyIdOf(publicKey) };
}

/** From a PKCS#8 private key PEM (the public key is derived from it). */
export function keysFromPem(privatePem: string | Buffer): TokenKeys {
  const privateKey = createPrivateKey(privatePem);
  if (privateKey.asymmetricKeyType !== "ed25519") throw new TypeError("token signing key must be Ed25519");
  const publicKey = createPublicKey(privateKey);
  return { privateKey, publicKey, keyId: keyIdOf(publicKey) };
}

/** From an SPKI public key PEM: what a process that only verifies needs. */
export function publicKeyFromPem(publicPem: string | Buffer): KeyObject {
  const key = createPublicKey(publicPem);
  if (key.asymmetricKeyType !== "ed25519") throw new TypeError("token verification key must be Ed25519");
  return key;
}

/**
 * `parse` of the key file at `path`, its failure naming the file: OpenSSL's own
 * words ("error:1E08010C:DECODER routines::unsupported") say neither which file
 * nor that it is the key that is wrong.
 */
function keyFromFile<T>(path: string, what: string, parse: () => T): T {
  try {
    return parse();
  } catch (e) {
    throw unusableKeyFile(path, what, e);
  }
}

export const PRIVATE_KEY_FILE = "token-ed25519.key.pem";
export const PUBLIC_KEY_FILE = "token-ed25519.pub.pem";

/**
 * Loads the signing key from dir/token-ed25519.key.pem, creating it (mode
 * 0600, plus the public half in token-ed25519.pub.pem for verifier-only
 * processes) on first start. Creation is create-if-absent via link(2), so two
 * processes starting together end up with the same key.
 */
export async function loadOrCreateKeys(dir: string): Promise<TokenKeys> {
  const privatePath = join(dir, PRIVATE_KEY_FILE);
  const existing = await readFile(privatePath).catch((e: NodeJS.ErrnoException) => {
    if (e.code === "ENOENT") return undefined;
    throw e;
  });
  if (existing) {
    const keys = keyFromFile(privatePath, "an Ed25519 private key in PKCS#8 PEM", () => keysFromPem(existing));
    // A start that died between the two files left the private key alone, and gateways would wait for the
    // public one for good. Best effort: a directory read-only to the api may have its public key elsewhere.
    await writePublicKey(dir, keys).catch(() => undefined);
    return keys;
  }

  await mkdir(dir, { recursive: true });
  const keys = generateKeys();
  const tmp = `${privatePath}.${randomBytes(6).toString("hex")}.tmp`;
  await writeFlushed(tmp, keys.privateKey.export({ format: "pem", type: "pkcs8" }));
  try {
    await link(tmp, privatePath);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
    // Another process won the race: use its key.
    const theirs = await readFile(privatePath);
    return keyFromFile(privatePath, "an Ed25519 private key in PKCS#8 PEM", () => keysFromPem(theirs));
  } finally {
    await rm(tmp, { force: true });
  }
  await flushDir(dir);
  await writePublicKey(dir, keys);
  return keys;
}

/**
 * The public half in dir/token-ed25519.pub.pem, unless it is there already.
 * Whole or not at all (a rename): a gateway polling for it never reads it
 * half written.
 */
async function writePublicKey(dir: string, keys: TokenKeys): Promise<void> {
  const path = join(dir, PUBLIC_KEY_FILE);
  const pem = Buffer.from(keys.publicKey.export({ format: "pem", type: "spki" }));
  const there = await readFile(path).catch(() => undefined);
  if (there?.equals(pem)) return;
  const tmp = `${path}.${randomBytes(6).toString("hex")}.tmp`;
  try {
    await writeFlushed(tmp, pem, 0o644);
    await rename(tmp, path);
    await flushDir(dir);
  } finally {
    await rm(tmp, { force: true });
  }
}

/** The api's verification key was not there within the wait: a gateway cannot check a token without it. */
export class MissingKeyError extends Error {
  constructor(path: string, waitMs: number) {
    super(`no token verification key at ${path} after ${waitMs / 1000} s (CHAT_START_TIMEOUT_S): start an api process with the same CHAT_KEYS_DIR first`);
    this.name = "MissingKeyError";
  }
}

/**
 * Loads the verification key that the api wrote to dir/token-ed25519.pub.pem.
 * Gateways only verify, so they never need the private key; a gateway that
 * starts before any api waits for the file (up to `waitMs`), then throws a
 * MissingKeyError; once `signal` aborts, it waits no longer and throws its reason.
 */
export async function loadPublicKeys(dir: string, waitMs = 60_000, signal?: AbortSignal): Promise<KeyObject[]> {
  const path = join(dir, PUBLIC_KEY_FILE);
  // Monotonic: a wall clock set right while a gateway waits at boot (stepped forward by hours) ended the wait at once.
  const deadline = monotonicNow() + waitMs;
  for (;;) {
    const pem = await readFile(path).catch((e: NodeJS.ErrnoException) => {
      if (e.code === "ENOENT") return undefined;
      throw e;
    });
    // Empty: written by a build that wrote it in place, not yet filled.
    if (pem && pem.length > 0) return [keyFromFile(path, "an Ed25519 public key in SPKI PEM", () => publicKeyFromPem(pem))];
    if (monotonicNow() > deadline) throw new MissingKeyError(path, waitMs);
    signal?.throwIfAborted();
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        signal?.removeEventListener("abort", wake);
        resolve();
      }, 200);
      const wake = () => {
        clearTimeout(timer);
        resolve();
      };
      signal?.addEventListener("abort", wake, { once: true });
    });
    signal?.throwIfAborted();
  }
}
