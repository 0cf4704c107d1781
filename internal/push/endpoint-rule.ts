import { isIP } from "node:net";
import { isGlobalAddress } from "./addresses.js";

/**
 * Names that only ever resolve inside a network: RFC 6761 localhost,
 * RFC 6762 mDNS, RFC 8375 home networks, ICANN's private-use .internal
 * (where cloud metadata lives, e.g. metadata.google.internal).
 */
const LOCAL_SUFFIXES = ["localhost", "local", "home.arpa", "internal"];

/**
 * Why a Web Push endpoint URL must not be used, or undefined when it may.
 * The endpoint comes from a user, and the notifier POSTs to it from inside
 * our network, so anything but a public https push service is a
 * server-side request forgery vector. Used at registration and again at
 * send time (endpoints stored before this rule, or while allowLocal was on).
 *
 * A host name that passes is checked once more after DNS resolution when
 * sending (egress.ts): only that holds against a public name pointed at a
 * private address.
 *
 * allowLocal (CHAT_PUSH_ALLOW_HTTP) is for tests and local setups whose
 * push service stand-in listens on loopback: http, any host, any port.
 */
export function webPushEndpointProblem(url: URL, allowLocal: boolean): string | undefined {
  if (url.protocol !== "https:" && !(allowLocal && url.protocol === "http:")) return "must be an https:// URL";
  if (url.username || url.password) return "must not carry credentials";
  if (allowLocal) return undefined;
  // Browsers' push services (FCM, Mozilla autopush, Apple, WNS) all serve
  // on 443. Another port would only let an endpoint aim at some other
  // service on a public address: refusing it costs nothing real.
  if (url.port !== "") return "must use the default https port (443), as push services do";
  const host = url.hostname.toLowerCase().replace(/\.$/, "");
  if (host.startsWith("[")) {
    const ip = host.slice(1, -1);
    return isGlobalAddress(ip) ? undefined : `must not point at a private, loopback or otherwise non-public address (${ip})`;
  }
  // The URL parser has already turned every IPv4 spelling (2130706433, 0x7f.1) into dotted decimal.
  if (isIP(host)) return isGlobalAddress(host) ? undefined : `must not point at a private, loopback or otherwise non-public address (${host})`;
  // A single label resolves through the search domains, i.e. to internal names.
  if (!host.includes(".") || LOCAL_SUFFIXES.some((s) => host === s || host.endsWith(`.${s}`))) {
    return `must name a public host name, not ${JSON.stringify(host)}`;
  }
  return undefined;
}
