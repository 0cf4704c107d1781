import { closeSync, mkdirSync, openSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";

/** One signed-in device of the CLI, as kept on disk. */
export interface SavedLogin {
  server: string;
  username: string;
  userId: string;
  deviceId: string;
  accessToken: string;
  /** By this machine's clock (the server's may be far from it): when the token came, plus its lifetime. */
  accessExpiresAtMs: number;
  refreshToken: string;
}

/**
 * How long a chat-cli waits for another's refresh to let go of the lock:
 * longer than that refresh's own deadline (CALL_TIMEOUT_MS, 15 s), so a
 * refresh that hangs to its end never makes the one waiting give up first.
 */
export const LOCK_WAIT_MS = 20_000;

/**
 * The refresh lock stayed taken past the wait: another chat-cli's refresh
 * is slow or hung, which mends by itself (follow tries again), unless a
 * dead process left the lock (taken as such after 30 s).
 */
export class RefreshLockBusy extends Error {}

/** The credentials file is there but holds no login this chat-cli can use (edited by hand, cut short). */
export class DamagedLogin extends Error {
  constructor(
    readonly file: string,
    /** What is wrong with it: "is not valid JSON", "has no refreshToken". */
    readonly reason: string,
  ) {
    super(`${file} ${reason}; remove it and log in again`);
  }
}

/**
 * The home is another user's, or others may write in it: they could swap the credentials file for
 * one of their own (a login on their server, which every later command would send to), or plant a
 * link where it is written. The README's own examples put homes in /tmp, where anyone may make a
 * folder of that name first.
 */
export class UnsafeHome extends Error {}

function isHttpUrl(raw: string): boolean {
  try {
    const u = new URL(raw);
    return u.protocol === "http:" || u.protocol === "https:";
  } catch {
    return false;
  }
}

const LOGIN_STRINGS = ["server", "username", "userId", "deviceId", "accessToken", "refreshToken"] as const;

/**
 * The CLI's state directory: $CHAT_CLI_HOME, else $XDG_CONFIG_HOME/chat-cli,
 * else ~/.config/chat-cli. The credentials file is written atomically with
 * mode 0600; a lock file serialises refreshes between CLI processes, since
 * a refresh token is single-use.
 */
export class LoginStore {
  readonly dir: string;

  constructor(
    env: NodeJS.ProcessEnv = process.env,
    private readonly lockWaitMs = LOCK_WAIT_MS,
  ) {
    this.dir = env.CHAT_CLI_HOME || join(env.XDG_CONFIG_HOME || join(homedir(), ".config"), "chat-cli");
  }

  get file(): string {
    return join(this.dir, "credentials.json");
  }

  /** Throws UnsafeHome for a home another user owns or others may write in; none there yet is fine. */
  checkHome(): void {
    let st;
    try {
      st = statSync(this.dir);
    } catch {
      return;
    }
    const uid = process.getuid?.();
    if (uid !== undefined && st.uid !== uid) {
      throw new UnsafeHome(`${this.dir} belongs to another user (uid ${st.uid}): chat-cli keeps no credentials there; set CHAT_CLI_HOME to a folder of your own`);
    }
    if ((st.mode & 0o022) !== 0) {
      throw new UnsafeHome(`${this.dir} may be written by others (mode ${(st.mode & 0o777).toString(8)}): chat-cli keeps no credentials there; chmod 700 ${this.dir}`);
    }
  }

  read(): SavedLogin | undefined {
    this.checkHome();
    let raw: string;
    try {
      raw = readFileSync(this.file, "utf8");
    } catch {
      return undefined;
    }
    let login: unknown;
    try {
      login = JSON.parse(raw);
    } catch {
      throw new DamagedLogin(this.file, "is not valid JSON");
    }
    if (typeof login !== "object" || login === null || Array.isArray(login)) throw new DamagedLogin(this.file, "is not a login");
    const fields = login as Record<string, unknown>;
    for (const name of LOGIN_STRINGS) {
      if (typeof fields[name] !== "string" || fields[name] === "") throw new DamagedLogin(this.file, `has no ${name}`);
    }
    if (typeof fields.accessExpiresAtMs !== "number") throw new DamagedLogin(this.file, "has no accessExpiresAtMs");
    // Else every call failed in the HTTP library's words ("Invalid URL"), naming neither the file nor what to do.
    if (!isHttpUrl(fields.server as string)) throw new DamagedLogin(this.file, "has no server URL");
    // Else "Cannot convert x to a BigInt" at the first use of either.
    for (const name of ["userId", "deviceId"] as const) {
      if (!/^\d+$/.test(fields[name] as string)) throw new DamagedLogin(this.file, `has no ${name}`);
    }
    return login as SavedLogin;
  }

  /** As `read`, a damaged file given back rather than thrown: each command decides what one means to it. */
  readOrDamaged(): SavedLogin | DamagedLogin | undefined {
    try {
      return this.read();
    } catch (err) {
      if (err instanceof DamagedLogin) return err;
      throw err;
    }
  }

  write(login: SavedLogin): void {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    this.checkHome();
    const tmp = `${this.file}.${process.pid}.tmp`;
    writeFileSync(tmp, `${JSON.stringify(login, null, 2)}\n`, { mode: 0o600 });
    renameSync(tmp, this.file);
  }

  remove(): void {
    try {
      unlinkSync(this.file);
    } catch {
      // already gone
    }
  }

  /** Runs `fn` holding the refresh lock (a lock older than 30 s is taken as left behind by a dead process). */
  async locked<T>(fn: () => Promise<T>): Promise<T> {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    this.checkHome();
    const lock = join(this.dir, "refresh.lock");
    const deadline = Date.now() + this.lockWaitMs;
    for (;;) {
      try {
        closeSync(openSync(lock, "wx", 0o600));
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
        try {
          if (Date.now() - statSync(lock).mtimeMs > 30_000) unlinkSync(lock);
        } catch {
          // someone else removed it
        }
        if (Date.now() > deadline) throw new RefreshLockBusy(`could not take ${lock}; remove it if no other chat-cli is running`);
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    try {
      return await fn();
    } finally {
      try {
        unlinkSync(lock);
      } catch {
        // gone already
      }
    }
  }
}
