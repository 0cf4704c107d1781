import { hash, verify, type Algorithm, type Options } from "@node-rs/argon2";
import { ChatError } from "../model/errors.js";

/**
 * Argon2id at the OWASP baseline (19 MiB, 2 passes, 1 lane): a few tens of
 * milliseconds per hash here. Tests pass LIGHT_PASSWORD_PARAMS so that a
 * suite signing up hundreds of users stays fast.
 */
export interface PasswordParams {
  memoryCostKiB: number;
  timeCost: number;
  parallelism: number;
}

export const DEFAULT_PASSWORD_PARAMS: PasswordParams = { memoryCostKiB: 19_456, timeCost: 2, parallelism: 1 };
export const LIGHT_PASSWORD_PARAMS: PasswordParams = { memoryCostKiB: 1024, timeCost: 1, parallelism: 1 };

/**
 * Hashes a process may have under way or waiting for a thread (argon2 runs a
 * few at a time): past these a sign-in is refused at once, UNAVAILABLE with a
 * retry time. Unbounded, a login storm queued every request behind all those
 * before it, each waiting out its client's deadline, then its retry too.
 */
export const DEFAULT_MAX_PENDING_HASHES = 256;
/** The retry time told a sign-in refused for the load: about what the queue takes to go down. */
const BUSY_RETRY_AFTER_MS = 1_000;

const NOT_HELD = (): void => {};

// Algorithm is an ambient const enum, which isolatedModules cannot reference.
const ARGON2ID = 2 as Algorithm;

export class PasswordHasher {
  private readonly options: Options;
  private dummyHash: Promise<string> | undefined;
  private pending = 0;

  constructor(
    params: PasswordParams = DEFAULT_PASSWORD_PARAMS,
    private readonly maxPending = DEFAULT_MAX_PENDING_HASHES,
  ) {
    this.options = {
      algorithm: ARGON2ID,
      memoryCost: params.memoryCostKiB,
      timeCost: params.timeCost,
      parallelism: params.parallelism,
    };
  }

  /**
   * A PHC string ($argon2id$v=19$m=...) that carries its own salt and
   * parameters, of the password in Unicode NFKC (NIST SP 800-63B 5.1.1.2):
   * one typed as "é" on one device and as "e" with a combining accent on
   * another (or in full-width forms by an input method) is the same password.
   */
  async hash(password: string): Promise<string> {
    const release = this.reserve();
    try {
      return await hash(password.normalize("NFKC"), this.options);
    } finally {
      release();
    }
  }

  /**
   * Takes a place for one hash, given back by the function returned, or
   * throws UNAVAILABLE with a retry time when there is none. A login takes
   * it before it is counted as a failure: one refused for the load is no
   * guess at the password. Its verify then says it `held` one.
   */
  reserve(): () => void {
    if (this.pending >= this.maxPending) {
      throw new ChatError("unavailable", "too many sign-ins at once; retry in a moment", BUSY_RETRY_AFTER_MS);
    }
    this.pending++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.pending--;
    };
  }

  /**
   * False for a wrong password or an unparsable hash. The password is tried
   * in NFKC, and as given when that differs: a hash made before passwords
   * were normalised is of the password as its owner typed it then.
   */
  async verify(passwordHash: string, password: string, held = false): Promise<boolean> {
    const release = held ? NOT_HELD : this.reserve();
    try {
      const normalized = password.normalize("NFKC");
      if (await this.verifyExactly(passwordHash, normalized)) return true;
      return normalized !== password && (await this.verifyExactly(passwordHash, password));
    } finally {
      release();
    }
  }

  private async verifyExactly(passwordHash: string, password: string): Promise<boolean> {
    try {
      return await verify(passwordHash, password);
    } catch {
      return false;
    }
  }

  /**
   * Spends the time of one verification for a login with an unknown
   * username, so the response time does not tell which usernames exist.
   */
  async verifyNothing(password: string, held = false): Promise<false> {
    // Not through hash(): one refused for the load would be kept, and refuse every unknown name after.
    this.dummyHash ??= hash("not-a-real-password", this.options);
    await this.verify(await this.dummyHash, password, held);
    return false;
  }
}
