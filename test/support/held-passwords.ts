import { PasswordHasher } from "../../internal/auth/passwords.js";

/**
 * A PasswordHasher whose checks wait until all of `guesses` are under way: each one is either in
 * a check or answered without one (refused), as `answered()` tells. Every guess then overlaps every
 * check however slowly the machine takes them in, where a fixed delay per check (argon2id's time)
 * let the first checks end before the last guesses came on a loaded machine.
 */
export class HeldPasswords extends PasswordHasher {
  verified = 0;
  private refused = 0;
  private open!: () => void;
  private readonly opened = new Promise<void>((r) => (this.open = r));

  constructor(
    params: ConstructorParameters<typeof PasswordHasher>[0],
    private readonly guesses: number,
  ) {
    super(params);
  }

  /** A guess was answered: call it for every one (its answer comes after its check, if it had one). */
  answered(): void {
    this.refused++;
    this.release();
  }

  // verifyNothing (an unknown name) checks through verify too: one count per check either way.
  override async verify(passwordHash: string, password: string, held?: boolean): Promise<boolean> {
    await this.held();
    return super.verify(passwordHash, password, held);
  }

  private async held(): Promise<void> {
    this.verified++;
    this.release();
    await this.opened;
  }

  private release(): void {
    // Before the gate opens no check has ended, so every answer so far is a refusal.
    if (this.verified + this.refused >= this.guesses) this.open();
  }
}
