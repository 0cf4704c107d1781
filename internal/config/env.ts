/**
 * Reading configuration from the environment, once, at start-up. Every
 * error names the variable and says what it expected, and all errors are
 * reported together so one restart fixes them all.
 */
export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  - ${problems.join("\n  - ")}`);
    this.name = "ConfigError";
  }
}

export class EnvReader {
  readonly problems: string[] = [];

  constructor(private readonly env: NodeJS.ProcessEnv = process.env) {}

  string(name: string, fallback: string): string {
    const v = this.env[name];
    return v === undefined || v === "" ? fallback : v;
  }

  int(name: string, fallback: number, min: number, max: number): number {
    const raw = this.env[name];
    if (raw === undefined || raw === "") return fallback;
    // Plain decimal digits only: Number() also takes " " (as 0), "0x10", "1e3" and "+1".
    const n = /^-?\d+$/.test(raw) ? Number(raw) : NaN;
    if (!Number.isInteger(n) || n < min || n > max) {
      this.problems.push(`${name}=${JSON.stringify(raw)}: expected an integer from ${min} to ${max}`);
      return fallback;
    }
    return n;
  }

  /** As `int`, with no default: undefined when the variable is unset or empty. */
  optionalInt(name: string, min: number, max: number): number | undefined {
    const raw = this.env[name];
    return raw === undefined || raw === "" ? undefined : this.int(name, min, min, max);
  }

  oneOf<T extends string>(name: string, fallback: T, allowed: readonly T[]): T {
    const raw = this.env[name];
    if (raw === undefined || raw === "") return fallback;
    if (!(allowed as readonly string[]).includes(raw)) {
      this.problems.push(`${name}=${JSON.stringify(raw)}: expected one of ${allowed.join(", ")}`);
      return fallback;
    }
    return raw as T;
  }

  list(name: string, fallback: readonly string[]): string[] {
    const raw = this.env[name];
    if (raw === undefined || raw === "") return [...fallback];
    return raw.split(",").map((s) => s.trim()).filter(Boolean);
  }

  /** Throws a ConfigError listing every problem found so far. */
  done(): void {
    if (this.problems.length > 0) throw new ConfigError(this.problems);
  }
}

/**
 * Listeners of one process on one port: the second would find it taken by the
 * first and blame "another copy of this process". Each port after the first
 * that repeats an earlier one (0, a free port, never does) is a problem.
 */
export function checkDistinctPorts(r: EnvReader, ports: ReadonlyArray<readonly [name: string, port: number | undefined]>): void {
  ports.forEach(([name, port], i) => {
    const earlier = ports.slice(0, i).find(([, p]) => p !== undefined && p !== 0 && p === port);
    if (earlier) r.problems.push(`${name}=${port}: the same port as ${earlier[0]}; each listener needs its own (0 picks a free one)`);
  });
}

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;

/** CHAT_LOG_LEVEL, one of pino's levels: a typo stops start-up naming the variable, not deep inside pino. */
export function readLogLevel(r: EnvReader): (typeof LOG_LEVELS)[number] {
  return r.oneOf("CHAT_LOG_LEVEL", "info", LOG_LEVELS);
}
