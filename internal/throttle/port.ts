/**
 * Events counted per key in fixed windows: the first opens a window of
 * `windowMs`, and the count starts over when it closes (later events never
 * stretch it). In the cluster they live in Redis so every api process sees
 * the same; chatd keeps them in memory. Failed logins are counted in one
 * (LoginAttempts), the direct chats an account starts in another.
 */
export interface WindowCounts {
  /** The count so far in the key's open window (0 and 0 ms when none is open). */
  get(key: string): Promise<WindowCount>;
  /** Counts one more, opening a window if none is open. Atomic: calls at the same moment each get their own count. */
  add(key: string): Promise<WindowCount>;
  /** Takes back one that `add` counted, in the window still open (what it counted did not happen after all). */
  takeBack(key: string): Promise<void>;
  /** Forgets the key's count. */
  clear(key: string): Promise<void>;
  close(): Promise<void>;
}

export interface WindowCount {
  count: number;
  /** Milliseconds until the window closes and the count starts over. */
  resetInMs: number;
}

/**
 * Failed sign-ins, counted per key in fixed windows: the first failure opens
 * a window of `windowMs`, and the count starts over when it closes; and
 * successful ones, remembered per key for a while. In the cluster both live
 * in Redis so every api process sees the same; chatd keeps them in memory.
 */
export interface LoginAttempts {
  /** The failures counted so far in the key's open window (0 and 0 ms when none is open). */
  get(key: string): Promise<FailureCount>;
  /** Counts one more failure, opening a window if none is open. */
  fail(key: string): Promise<FailureCount>;
  /** A successful sign-in forgets the key's failures. */
  clear(key: string): Promise<void>;
  /** Remembers for `ms` that the key signed in successfully (an account from an address). */
  rememberSuccess(key: string, ms: number): Promise<void>;
  /** Whether the key signed in successfully within the time it was remembered for. */
  succeededBefore(key: string): Promise<boolean>;
  close(): Promise<void>;
}

export interface FailureCount {
  failures: number;
  /** Milliseconds until the window closes and the count starts over. */
  resetInMs: number;
}
