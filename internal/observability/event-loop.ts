/** How far behind the event loop runs: what /livez reads. */
export interface LoopDelay {
  /** In ms: how late the last timer turn of the loop came, or how overdue the next one is now, whichever is more. */
  delayMs(): number;
}

/**
 * /livez fails past this delay. The longest stalls the roles are known to
 * make are a tenth of a second (a scrape walking 16,000 sockets held the loop
 * 110 ms; a major GC of a large heap takes some hundreds of ms), and a process
 * that answers nothing for 5 s is wedged to every client, whose calls time out
 * meanwhile: past this, a restart serves them better than a wait. It matches
 * the 5 s within which a readiness check must answer.
 */
export const MAX_LOOP_DELAY_MS = 5_000;

/** How often the loop's timer turns: a block is seen within this of its start, at one timer a second's cost. */
export const LOOP_TICK_MS = 1_000;

/**
 * Measures the event loop's delay with a timer whose lateness is kept: a loop
 * blocked by synchronous work runs the timer late by as much. The overdue
 * timer is read too, so a probe that is answered right after a long block
 * (before the timer's turn) still sees it. `now` is the clock, for tests.
 */
export class EventLoopDelay implements LoopDelay {
  private readonly now: () => number;
  private readonly tickMs: number;
  private due: number;
  private lateMs = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(options: { tickMs?: number; now?: () => number } = {}) {
    this.now = options.now ?? (() => performance.now());
    this.tickMs = options.tickMs ?? LOOP_TICK_MS;
    this.due = this.now() + this.tickMs;
    this.schedule();
  }

  delayMs(): number {
    return Math.max(this.lateMs, this.now() - this.due, 0);
  }

  stop(): void {
    clearTimeout(this.timer);
  }

  private schedule() {
    this.timer = setTimeout(() => {
      const now = this.now();
      this.lateMs = Math.max(0, now - this.due);
      this.due = now + this.tickMs;
      this.schedule();
    }, this.tickMs);
    // Measuring keeps no process alive.
    this.timer.unref();
  }
}

let processLoop: EventLoopDelay | undefined;

/** The process's one measure of its event loop, started on first use: every listener's /livez reads the same loop. */
export function processLoopDelay(): LoopDelay {
  return (processLoop ??= new EventLoopDelay());
}
