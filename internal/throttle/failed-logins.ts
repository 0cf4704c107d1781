import type { FailureCount, LoginAttempts, WindowCount, WindowCounts } from "./port.js";

/**
 * The failure half of LoginAttempts, the same on every engine: failures are a
 * WindowCounts. Adapters add where successes are remembered.
 */
export abstract class FailedLogins implements Pick<LoginAttempts, "get" | "fail" | "clear"> {
  constructor(protected readonly failures: WindowCounts) {}

  async get(key: string): Promise<FailureCount> {
    return asFailures(await this.failures.get(key));
  }

  async fail(key: string): Promise<FailureCount> {
    return asFailures(await this.failures.add(key));
  }

  async clear(key: string): Promise<void> {
    await this.failures.clear(key);
  }
}

const asFailures = ({ count, resetInMs }: WindowCount): FailureCount => ({ failures: count, resetInMs });
