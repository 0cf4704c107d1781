import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { AuthService, type Credentials } from "../../gen/es/chat/v1/auth_pb.js";
import type { User } from "../../gen/es/chat/v1/types_pb.js";
import { tsMs } from "./format.js";

/** What survives a reload: kept in localStorage, shared by the tabs of this browser. */
export interface StoredCredentials {
  accessToken: string;
  /** By this browser's clock (the server's may be far from it): when the token was stored, plus its lifetime. */
  accessExpiresAtMs: number;
  accessIssuedAtMs: number;
  refreshToken: string;
  userId: string;
  deviceId: string;
  username: string;
  displayName: string;
}

const KEY = "chat.credentials";
/**
 * Refresh this long before the access token runs out, so no call races its
 * expiry: a minute, or a quarter of the token's life if that is shorter.
 */
function needsRefresh(c: StoredCredentials, now = Date.now()): boolean {
  const margin = Math.min(60_000, (c.accessExpiresAtMs - (c.accessIssuedAtMs ?? 0)) / 4);
  return c.accessExpiresAtMs - now <= margin;
}

/**
 * When the server signed the access token, by its own clock: the `iat` of
 * the token's payload (base64url JSON before the signature); undefined when
 * it does not say.
 */
function issuedAt(token: string): number | undefined {
  const dot = token.indexOf(".");
  if (dot <= 0) return undefined;
  try {
    const iat = (JSON.parse(atob(token.slice(0, dot).replace(/-/g, "+").replace(/_/g, "/"))) as { iat?: unknown }).iat;
    return typeof iat === "number" && Number.isFinite(iat) ? iat : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The signed-in device's tokens. Access tokens are short-lived; the refresh
 * token is single-use and rotates on every refresh, so two tabs must never
 * spend the same one: refreshes are serialised across tabs with a Web Lock,
 * and a tab that waited re-reads what the other tab stored.
 */
export class Auth {
  private refreshing?: Promise<StoredCredentials>;
  private readonly lostListeners = new Set<() => void>();
  private readonly switchedListeners = new Set<() => void>();
  /** The device this tab last saw signed in: another tab signing in changes it. */
  private device = this.read()?.deviceId;
  private readonly client = createClient(AuthService, createConnectTransport({ baseUrl: location.origin }));

  constructor() {
    // Another tab signed out, or in (as someone else, or from the sign-in
    // screen): follow it. Tabs share the stored device; a tab that kept going
    // as the one before would send as the new one and show the old one's chats.
    window.addEventListener("storage", (e) => {
      if (e.key !== KEY) return;
      const next = this.read();
      const was = this.device;
      this.device = next?.deviceId;
      if (!next) this.emitLost();
      else if (next.deviceId !== was) for (const l of [...this.switchedListeners]) l();
    });
  }

  get current(): StoredCredentials | undefined {
    return this.read();
  }

  get userId(): bigint {
    return BigInt(this.required().userId);
  }

  get deviceId(): bigint {
    return BigInt(this.required().deviceId);
  }

  onLost(listener: () => void): () => void {
    this.lostListeners.add(listener);
    return () => this.lostListeners.delete(listener);
  }

  /** Another tab signed in (another account, or this one as a new device). */
  onSwitched(listener: () => void): () => void {
    this.switchedListeners.add(listener);
    return () => this.switchedListeners.delete(listener);
  }

  store(c: Credentials, user?: User): StoredCredentials {
    const prev = this.read();
    const now = Date.now();
    const expires = tsMs(c.accessTokenExpiresAt);
    const issued = issuedAt(c.accessToken);
    // The expiry is by the server's clock, which this browser's may be far from: kept as the token's lifetime from now.
    const lifetime = expires === undefined ? 5 * 60_000 : expires - (issued ?? now);
    const stored: StoredCredentials = {
      accessToken: c.accessToken,
      accessExpiresAtMs: now + lifetime,
      accessIssuedAtMs: now,
      refreshToken: c.refreshToken,
      userId: c.userId.toString(),
      deviceId: c.deviceId.toString(),
      username: user?.username ?? prev?.username ?? "",
      displayName: user?.displayName ?? prev?.displayName ?? "",
    };
    localStorage.setItem(KEY, JSON.stringify(stored));
    this.device = stored.deviceId;
    return stored;
  }

  updateProfile(user: User): void {
    const c = this.read();
    if (!c) return;
    localStorage.setItem(KEY, JSON.stringify({ ...c, username: user.username, displayName: user.displayName }));
  }

  clear(): void {
    localStorage.removeItem(KEY);
    this.device = undefined;
  }

  /** A valid access token, refreshed first when it is about to run out. */
  async accessToken(): Promise<string> {
    const c = this.required();
    if (!needsRefresh(c)) return c.accessToken;
    return (await this.refresh()).accessToken;
  }

  /**
   * Exchanges the refresh token for new credentials. `force` refreshes even a
   * token that looks fresh (the server said it is not). A refused refresh
   * token means the device was signed out: listeners of onLost hear it.
   */
  refresh(force = false): Promise<StoredCredentials> {
    const seen = this.read()?.accessToken;
    this.refreshing ??= this.withLock(async () => {
      const c = this.required();
      // Another tab may have refreshed while we waited for the lock.
      const fresh = !needsRefresh(c);
      if (fresh && (!force || c.accessToken !== seen)) return c;
      try {
        const res = await this.client.refresh({ refreshToken: c.refreshToken });
        // Another tab signed out, or in, meanwhile: stored, the answer would undo that for every tab.
        const now = this.read();
        if (now?.deviceId !== c.deviceId) return this.required();
        // Another tab refreshed the same token meanwhile (no Web Locks: not a secure context). The server takes
        // the second use as a retry: the token it issued for the first is spent, and only the one issued last
        // lives. Kept, the spent one signed the device out for reuse at its next refresh.
        if (now.refreshToken !== c.refreshToken && !((issuedAt(res.credentials!.accessToken) ?? 0) > (issuedAt(now.accessToken) ?? Infinity))) return now;
        return this.store(res.credentials!);
      } catch (err) {
        // Another tab signed in, or out, meanwhile: the refusal is of the device before, and clearing would sign that tab's sign-in out.
        const now = this.read();
        if (now?.deviceId !== c.deviceId || now.refreshToken !== c.refreshToken) return this.required();
        if (err instanceof ConnectError && (err.code === Code.Unauthenticated || err.code === Code.PermissionDenied)) {
          this.clear();
          this.emitLost();
        }
        throw err;
      }
    }).finally(() => {
      this.refreshing = undefined;
    });
    return this.refreshing;
  }

  private withLock<T>(fn: () => Promise<T>): Promise<T> {
    const locks = (navigator as Navigator & { locks?: LockManager }).locks;
    // request() resolves with what the callback's promise resolves to.
    return locks ? (locks.request("chat.refresh", fn) as unknown as Promise<T>) : fn();
  }

  private required(): StoredCredentials {
    const c = this.read();
    if (!c) throw new ConnectError("not signed in", Code.Unauthenticated);
    return c;
  }

  private read(): StoredCredentials | undefined {
    try {
      const raw = localStorage.getItem(KEY);
      return raw ? (JSON.parse(raw) as StoredCredentials) : undefined;
    } catch {
      return undefined;
    }
  }

  private emitLost(): void {
    for (const l of [...this.lostListeners]) l();
  }
}
