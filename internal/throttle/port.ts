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
