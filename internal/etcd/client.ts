import { Etcd3, type IOptions } from "etcd3";

/**
 * An etcd3 client tuned for leases with short TTLs: reconnects within about
 * a second after etcd comes back (the library's defaults can keep a host
 * "broken" for 5 s and back a watch off for up to 30 s), and detects a dead
 * TCP connection with gRPC keepalive pings.
 */
export interface EtcdClientOptions {
  /** "host:port" or "http://host:port" endpoints. */
  endpoints: readonly string[];
  /** Connect timeout per attempt (default 3000 ms). */
  dialTimeoutMs?: number;
  /** Longest wait between watch stream reconnects (default 1000 ms). */
  maxWatchBackoffMs?: number;
}

/** A capped, doubling backoff in the shape cockatiel's IBackoffFactory expects. */
function cappedBackoff(initialMs: number, maxMs: number) {
  interface Step {
    readonly duration: number;
    next(context: unknown): Step;
  }
  const step = (ms: number): Step => ({ duration: ms, next: () => step(Math.min(maxMs, ms * 2)) });
  return { next: () => step(initialMs) };
}

/**
 * A host policy that calls straight through. With the default circuit
 * breaker a single-endpoint client refuses every call for 5 s after three
 * failures, which would delay re-registering after etcd comes back.
 */
function passThroughPolicy() {
  const noEvent = () => ({ dispose() {} });
  return {
    onSuccess: noEvent,
    onFailure: noEvent,
    execute<T>(fn: (ctx: { signal: AbortSignal }) => PromiseLike<T> | T): Promise<T> {
      return Promise.resolve().then(() => fn({ signal: new AbortController().signal }));
    },
  };
}

export function createEtcdClient(options: EtcdClientOptions): Etcd3 {
  const hosts = options.endpoints.map((e) => (/^https?:\/\//.test(e) ? e : `http://${e}`));
  const opts: IOptions = {
    hosts,
    dialTimeout: options.dialTimeoutMs ?? 3_000,
    grpcOptions: {
      "grpc.initial_reconnect_backoff_ms": 100,
      "grpc.max_reconnect_backoff_ms": 1_000,
      // etcd's default --grpc-keepalive-min-time is 5 s: ping no faster than that.
      "grpc.keepalive_time_ms": 10_000,
      "grpc.keepalive_timeout_ms": 5_000,
    },
    faultHandling: {
      // The shapes match cockatiel's IPolicy / IBackoffFactory (etcd3 only calls execute / next).
      host: () => passThroughPolicy() as never,
      watchBackoff: cappedBackoff(100, options.maxWatchBackoffMs ?? 1_000) as never,
    },
  };
  return new Etcd3(opts);
}

/** Rejects with `what` if `p` has not settled after `ms`; the timer never keeps the process alive. */
export function deadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer from etcd within ${ms} ms`)), ms);
    timer.unref();
  });
  p.catch(() => {}); // a late rejection after the deadline is not unhandled
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

/** "/a/b/" from "a/b", "/a/b", "a/b/" (and "/" from ""). */
export function normalizePrefix(prefix: string): string {
  const trimmed = prefix.replace(/^\/+|\/+$/g, "");
  return trimmed === "" ? "/" : `/${trimmed}/`;
}
