import dns from "node:dns";
import http from "node:http";
import https from "node:https";
import type { LookupFunction } from "node:net";
import { isGlobalAddress } from "./addresses.js";

/** A host name resolved to an address push requests must not reach. */
export class RefusedAddressError extends Error {
  readonly code = "ERR_PUSH_ADDRESS_REFUSED";
  constructor(hostname: string, address: string) {
    super(`${hostname} resolves to a non-public address (${address}): refused`);
    this.name = "RefusedAddressError";
  }
}

export function isRefusedAddress(err: unknown): boolean {
  return (err as { code?: unknown } | null)?.code === "ERR_PUSH_ADDRESS_REFUSED";
}

/**
 * Wraps a resolver so a connection can only be made to public addresses.
 * The check sits in the socket's own lookup, so the address it vouches for
 * is the one connected to: no window for DNS rebinding between a check and
 * the connect. A name with any non-public address is refused outright
 * (a real push service never publishes one, and happy eyeballs might
 * otherwise try it).
 */
export function publicOnlyLookup(resolve: LookupFunction = dns.lookup as LookupFunction): LookupFunction {
  return (hostname, options, callback) => {
    resolve(hostname, { ...options, all: true }, (err, found) => {
      if (err) return callback(err, "");
      const addresses = typeof found === "string" ? [{ address: found, family: isIPv6Family(found) }] : found;
      const bad = addresses.find((a) => !isGlobalAddress(a.address));
      if (bad) return callback(new RefusedAddressError(hostname, bad.address), "");
      if (addresses.length === 0) return callback(Object.assign(new Error(`no address for ${hostname}`), { code: "ENOTFOUND" }), "");
      if (options.all) return callback(null, addresses);
      callback(null, addresses[0]!.address, addresses[0]!.family);
    });
  };
}

const isIPv6Family = (address: string) => (address.includes(":") ? 6 : 4);

export interface PushAgents {
  https: https.Agent;
  /** Only used when local endpoints are allowed (http:// is refused otherwise). */
  http: http.Agent;
  destroy(): void;
}

export interface PushAgentOptions {
  /** CHAT_PUSH_ALLOW_HTTP: connect anywhere (loopback test receivers). */
  allowLocal: boolean;
  /** How host names resolve; dns.lookup unless a test says otherwise. */
  lookup?: LookupFunction;
}

/**
 * The only way Web Push requests leave the process. Node connects to an
 * IP-literal host without calling lookup: those are refused before a
 * request is made (endpoint-rule.ts), so every connection here is to a
 * name this lookup resolved. Keep-alive, since most pushes go to a handful
 * of push services.
 */
export function createPushAgents(o: PushAgentOptions): PushAgents {
  const lookup = o.allowLocal ? o.lookup : publicOnlyLookup(o.lookup);
  const agents = {
    https: new https.Agent({ keepAlive: true, lookup }),
    http: new http.Agent({ keepAlive: true, lookup }),
  };
  return {
    ...agents,
    destroy: () => {
      agents.https.destroy();
      agents.http.destroy();
    },
  };
}
