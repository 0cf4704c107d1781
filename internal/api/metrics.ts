import type { DescMethod } from "@bufbuild/protobuf";
import { Counter, Histogram, type Registry } from "prom-client";
import { countedFromZero } from "../observability/metrics.js";

export interface ApiMetrics {
  /** Every public api call by method ("AuthService/Login") and outcome ("ok" or the status, "resource_exhausted"). */
  requests: Counter<"method" | "code">;
  seconds: Histogram<"method">;
  /** What the sign-in path did about its security: see authEvents. */
  auth: Counter<"event">;
  /** Starts each of `methods`' API_FAILURE_CODES series at 0: registerPublicApi, with the methods it serves. */
  served(methods: readonly DescMethod[]): void;
}

/** A method's `method` label: "AuthService/Login". */
export const methodLabel = (m: DescMethod): string => `${m.parent.name}/${m.name}`;

/**
 * The outcomes each method's series starts at 0 with: the server's own failures (an engine
 * away, a bug), which alerts are written on. Not all of them: methods times outcomes are some
 * 870 series, most never seen (a GetMe is never already_exists), and a client's own mistakes,
 * counted from their first, move no alert.
 */
export const API_FAILURE_CODES = ["unavailable", "internal"] as const;

/**
 * login_failed (a wrong password or unknown name), login_throttled (refused
 * for too many failures), refresh_reused (a refresh token used twice: its
 * device signed out), device_pruned (signed out by a login past the device
 * limit). A surge of any of them is worth a look. deletion_swept: an account
 * deletion whose process died after marking the account, finished by the
 * deletion sweep (deletion-sweeper.ts).
 */
const AUTH_EVENTS = ["login_failed", "login_throttled", "refresh_reused", "device_pruned", "password_changed", "account_deleted", "deletion_swept"] as const;
export type AuthEvent = (typeof AUTH_EVENTS)[number];

export function apiMetrics(registry: Registry): ApiMetrics {
  const requests = new Counter({
    name: "chat_api_requests_total",
    help: "Public api calls by method and outcome",
    labelNames: ["method", "code"],
    registers: [registry],
  });
  return {
    requests,
    served: (methods) => {
      for (const m of methods) for (const code of API_FAILURE_CODES) requests.inc({ method: methodLabel(m), code }, 0);
    },
    seconds: new Histogram({
      name: "chat_api_request_seconds",
      help: "Time to answer a public api call, by method",
      labelNames: ["method"],
      // Past 2.5 s too: sign-ins queue behind argon2's threads and an engine that stops answering
      // holds a call to its timeout, and histogram_quantile reads what is past the last bound as it.
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry],
    }),
    // Each event at 0 from the start: the rare ones (a refresh token reused) are the ones to alert on.
    auth: countedFromZero(
      new Counter({
        name: "chat_auth_events_total",
        help: "Security events of the sign-in path: login_failed, login_throttled, refresh_reused, device_pruned, password_changed, account_deleted, deletion_swept",
        labelNames: ["event"],
        registers: [registry],
      }),
      "event",
      AUTH_EVENTS,
    ),
  };
}
