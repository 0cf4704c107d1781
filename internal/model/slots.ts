/**
 * At most `size` holders at once, the rest waiting in the order they asked; a
 * holder's release hands its slot straight to the next. The stores' bursts
 * (a sweep's flips, a backlog's collapse windows) went past the Cassandra
 * driver's 2,048 requests per connection when let through all at once.
 */
export class Slots {
  private held = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(private readonly size: number) {
    if (!(size >= 1)) throw new Error(`slots: size must be at least 1, got ${size}`);
  }

  private async take(): Promise<void> {
    if (this.held < this.size) this.held++;
    else await new Promise<void>((turn) => this.waiting.push(turn));
  }

  private release(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.held--;
  }

  /** `work` in a slot, released however it ends. */
  async run<T>(work: () => Promise<T>): Promise<T> {
    await this.take();
    try {
      return await work();
    } finally {
      this.release();
    }
  }
}
