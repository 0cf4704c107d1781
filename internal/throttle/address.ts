import { isIPv4, isIPv6 } from "node:net";

/**
 * The key a client address is limited under. IPv4-mapped IPv6 addresses
 * (and NAT64's, 64:ff9b::/96) count as their IPv4 address, and an IPv6 address as its /64: one host
 * usually holds a whole /64, so a per-address limit would be no limit.
 *
 * A socket's own remoteAddress always comes in one spelling (libuv writes
 * lower case, the longest zero run compressed, a mapped address as
 * "::ffff:a.b.c.d"), but a proxy's X-Forwarded-For is text: any spelling of
 * one address must make one key. Read as text, "::ffff:c000:207" (a mapped
 * address in hex) and "0:0:0:0:0:ffff:192.0.2.7" were each keyed as the /64
 * of ::, one bucket for every IPv4 client a proxy wrote that way.
 */
export function addressKey(address: string | undefined): string {
  if (!address) return "unknown";
  const a = withoutPort(address.trim().toLowerCase());
  if (isIPv4(a)) return a;
  if (!isIPv6(a)) return a;
  const words = ipv6Words(a);
  if (!words) return a;
  const mapped = words.slice(0, 5).every((w) => w === 0) && words[5] === 0xffff;
  // NAT64's well-known prefix (RFC 6052): an IPv6-only host behind a translator sees every
  // IPv4 client there, and keyed by /64 they all shared one bucket.
  const nat64 = words[0] === 0x64 && words[1] === 0xff9b && words.slice(2, 6).every((w) => w === 0);
  if (mapped || nat64) {
    return [words[6]! >> 8, words[6]! & 0xff, words[7]! >> 8, words[7]! & 0xff].join(".");
  }
  return `${words.slice(0, 4).map((w) => w.toString(16)).join(":")}::/64`;
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

/** The eight 16-bit words of an IPv6 address (one isIPv6 took), a dotted IPv4 tail and a zone included. */
function ipv6Words(a: string): number[] | undefined {
  let text = a.replace(/%.*$/, "");
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (dotted) {
    const [b0, b1, b2, b3] = dotted.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, dotted.index)}${((b0 << 8) | b1).toString(16)}:${((b2 << 8) | b3).toString(16)}`;
  }
  const [head = "", tail] = text.split("::");
  const groups = (s: string) => (s ? s.split(":") : []);
  const h = groups(head);
  const t = tail === undefined ? [] : groups(tail);
  const missing = 8 - h.length - t.length;
  if (missing < 0 || (tail === undefined && missing !== 0)) return undefined;
  return [...h, ...Array<string>(missing).fill("0"), ...t].map((g) => parseInt(g, 16));
}
