import { isIPv4, isIPv6 } from "node:net";

/**
 * The key a client address is limited under. IPv4-mapped IPv6 addresses
 * count as their IPv4 address, and an IPv6 address as its /64: one host
 * usually holds a whole /64, so a per-address limit would be no limit.
 */
export function addressKey(address: string | undefined): string {
  if (!address) return "unknown";
  const a = withoutPort(address.trim().toLowerCase());
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(a);
  if (mapped) return mapped[1]!;
  if (isIPv4(a)) return a;
  if (!isIPv6(a)) return a;
  return `${expandIPv6(a).slice(0, 4).join(":")}::/64`;
}

/**
 * The host of "1.2.3.4:port" and "[v6]:port", as some proxies (Azure's
 * gateways) write the client into X-Forwarded-For: keyed with its port, each
 * connection of one client counted apart, and no limit held. An IPv6 address
 * without brackets has no port.
 */
function withoutPort(a: string): string {
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(a);
  if (bracketed) return bracketed[1]!;
  const v4 = /^(\d+\.\d+\.\d+\.\d+):\d+$/.exec(a);
  return v4 ? v4[1]! : a;
}

/** The last address of a proxy header such as X-Forwarded-For ("client, proxy1, proxy2"). */
export function lastForwarded(header: string | string[] | undefined): string | undefined {
  const raw = Array.isArray(header) ? header.join(",") : header;
  const last = raw?.split(",").map((s) => s.trim()).filter(Boolean).pop();
  return last || undefined;
}

function expandIPv6(a: string): string[] {
  const [head = "", tail] = a.split("::");
  const groups = (s: string) => (s ? s.split(":") : []);
  const h = groups(head);
  const t = tail === undefined ? [] : groups(tail);
  const missing = 8 - h.length - t.length;
  return [...h, ...Array<string>(Math.max(0, missing)).fill("0"), ...t].map((g) => g.replace(/^0+(?=.)/, ""));
}
