import { hash, verify, type Algorithm, type Options } from "@node-rs/argon2";

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

// Algorithm is an ambient const enum, which isolatedModules cannot reference.
const ARGON2ID = 2 as Algorithm;

export class PasswordHasher {
  private readonly options: Options;
  private dummyHash: Promise<string> | undefined;

  constructor(params: PasswordParams = DEFAULT_PASSWORD_PARAMS) {
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
  hash(password: string): Promise<string> {
    return hash(password.normalize("NFKC"), this.options);
  }

  /**
   * False for a wrong password or an unparsable hash. The password is tried
   * in NFKC, and as given when that differs: a hash made before passwords
   * were normalised is of the password as its owner typed it then.
   */
  async verify(passwordHash: string, password: string): Promise<boolean> {
    const normalized = password.normalize("NFKC");
    if (await this.verifyExactly(passwordHash, normalized)) return true;
    return normalized !== password && (await this.verifyExactly(passwordHash, password));
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
  async verifyNothing(password: string): Promise<false> {
    this.dummyHash ??= this.hash("not-a-real-password");
    await this.verify(await this.dummyHash, password);
    return false;
  }
}
