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
  add(key: string): Promise<Counted>;
  /**
   * Takes back one that `add` counted (what it counted did not happen after
   * all), given what that add answered: only from the window it counted in,
   * while still open. A window opened since (by others' adds after that one
   * closed) never counted it: taking from it let a burst of refusals at a
   * window's end, each given back just after, open the next window uncounted.
   */
  takeBack(key: string, counted: Counted): Promise<void>;
  /** Forgets the key's count. */
  clear(key: string): Promise<void>;
  close(): Promise<void>;
}

export interface WindowCount {
  count: number;
  /** Milliseconds until the window closes and the count starts over. */
  resetInMs: number;
}

/** What `add` answers: the count, and the window it was counted in. */
export interface Counted extends WindowCount {
  /** When that window ends, on the store's clock: no window opened after it ends at the same moment. */
  windowEndsAt: number;
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
