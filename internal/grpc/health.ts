import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import {
  Health,
  HealthCheckResponseSchema,
  HealthCheckResponse_ServingStatus as ServingStatus,
  HealthListResponseSchema,
  file_grpc_health_v1_health,
  type HealthCheckResponse,
} from "./gen/grpc/health/v1/health_pb.js";

export { Health, ServingStatus };
export const HEALTH_SERVICE_NAME = Health.typeName;
export const HEALTH_FILES = [file_grpc_health_v1_health];

type Listener = (status: ServingStatus) => void;

/**
 * The serving status of a gRPC server's services, as grpc.health.v1.Health
 * reports it ("" is the server as a whole). One instance per server; the
 * Connect and grpc-js adapters both read it.
 *
 * After shutdown() every service reports NOT_SERVING and later set() calls
 * are ignored, so a draining server is not marked SERVING again by a late
 * update (as grpc-go's health server does); resume() undoes that.
 */
export class HealthStatus {
  private readonly statuses = new Map<string, ServingStatus>();
  private readonly listeners = new Map<string, Set<Listener>>();
  private shuttingDown = false;

  /** Every service starts SERVING, and so does the server as a whole (""). */
  constructor(services: Iterable<string> = []) {
    this.statuses.set("", ServingStatus.SERVING);
    for (const s of services) this.statuses.set(s, ServingStatus.SERVING);
  }

  /** Makes a service known (SERVING, or NOT_SERVING after shutdown()); a known service keeps its status. */
  add(service: string): void {
    if (!this.statuses.has(service)) this.update(service, this.shuttingDown ? ServingStatus.NOT_SERVING : ServingStatus.SERVING);
  }

  set(service: string, status: ServingStatus.SERVING | ServingStatus.NOT_SERVING): void {
    if (this.shuttingDown) return;
    this.update(service, status);
  }

  /** Sets the server as a whole and every known service at once (a dependency every call needs came or went). */
  setAll(status: ServingStatus.SERVING | ServingStatus.NOT_SERVING): void {
    if (this.shuttingDown) return;
    for (const s of this.statuses.keys()) this.update(s, status);
  }

  /** The status of a service, undefined when it is unknown. */
  get(service: string): ServingStatus | undefined {
    return this.statuses.get(service);
  }

  all(): ReadonlyMap<string, ServingStatus> {
    return this.statuses;
  }

  /** True from shutdown() until resume(). */
  get draining(): boolean {
    return this.shuttingDown;
  }

  /** Marks everything NOT_SERVING (a draining server) and ignores set() until resume(). */
  shutdown(): void {
    this.shuttingDown = true;
    for (const s of this.statuses.keys()) this.update(s, ServingStatus.NOT_SERVING);
  }

  /** Marks everything SERVING again after shutdown(). */
  resume(): void {
    this.shuttingDown = false;
    for (const s of this.statuses.keys()) this.update(s, ServingStatus.SERVING);
  }

  /**
   * Calls `listener` at once with the current status (SERVICE_UNKNOWN for an
   * unknown service) and again on every change. Returns the unsubscribe function.
   */
  watch(service: string, listener: Listener): () => void {
    let set = this.listeners.get(service);
    if (!set) this.listeners.set(service, (set = new Set()));
    set.add(listener);
    listener(this.statuses.get(service) ?? ServingStatus.SERVICE_UNKNOWN);
    return () => {
      set.delete(listener);
      if (set.size === 0 && this.listeners.get(service) === set) this.listeners.delete(service);
    };
  }

  /** Number of open watches, for tests and metrics. */
  watchers(): number {
    let n = 0;
    for (const s of this.listeners.values()) n += s.size;
    return n;
  }

  private update(service: string, status: ServingStatus): void {
    if (this.statuses.get(service) === status) return;
    this.statuses.set(service, status);
    for (const l of this.listeners.get(service) ?? []) l(status);
  }
}

/**
 * A Watch stream's pending updates: only the newest status is kept, so a
 * slow reader holds one value, never a queue.
 */
export class LatestStatus {
  private pending: ServingStatus | undefined;
  private wake: (() => void) | undefined;

  push(status: ServingStatus): void {
    this.pending = status;
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  /** The next status, or undefined when `signal` aborts first. */
  async next(signal: AbortSignal): Promise<ServingStatus | undefined> {
    while (this.pending === undefined) {
      if (signal.aborted) return undefined;
      await new Promise<void>((resolve) => {
        const onAbort = () => resolve();
        this.wake = () => {
          signal.removeEventListener("abort", onAbort);
          resolve();
        };
        signal.addEventListener("abort", onAbort, { once: true });
      });
    }
    const s = this.pending;
    this.pending = undefined;
    return s;
  }
}

export function checkResponse(status: ServingStatus): HealthCheckResponse {
  return create(HealthCheckResponseSchema, { status });
}

/** grpc.health.v1.Health for a Connect router. */
export function healthConnect(health: HealthStatus): ServiceImpl<typeof Health> {
  return {
    check(req) {
      const status = health.get(req.service);
      if (status === undefined) throw new ConnectError(`unknown service ${JSON.stringify(req.service)}`, Code.NotFound);
      return checkResponse(status);
    },
    async *watch(req, ctx) {
      const latest = new LatestStatus();
      const stop = health.watch(req.service, (s) => latest.push(s));
      try {
        for (;;) {
          const s = await latest.next(ctx.signal);
          if (s === undefined) return;
          yield checkResponse(s);
          // Told NOT_SERVING, a watcher of a draining server is done: an open Watch held the
          // listener's close (GOAWAY waits for open streams) until its grace ran out, and was reset.
          if (health.draining) throw new ConnectError("server shutting down", Code.Unavailable);
        }
      } finally {
        stop();
      }
    },
    list() {
      const res = create(HealthListResponseSchema);
      for (const [name, status] of health.all()) res.statuses[name] = checkResponse(status);
      return res;
    },
  };
}
