import { isIPv4, isIPv6 } from "node:net";

/**
 * IPv4 blocks a push service never lives in: IANA's special-purpose
 * registry (not globally reachable), plus multicast, reserved and broadcast.
 * 169.254/16 is where cloud metadata services answer; 100.64/10 is CGNAT.
 */
const V4_NON_GLOBAL: readonly (readonly [string, number])[] = [
  ["0.0.0.0", 8], // "this network"; 0.0.0.0 reaches the local host on Linux
  ["10.0.0.0", 8],
  ["100.64.0.0", 10],
  ["127.0.0.0", 8],
  ["169.254.0.0", 16],
  ["172.16.0.0", 12],
  ["192.0.0.0", 24],
  ["192.0.2.0", 24],
  ["192.88.99.0", 24],
  ["192.168.0.0", 16],
  ["198.18.0.0", 15],
  ["198.51.100.0", 24],
  ["203.0.113.0", 24],
  ["224.0.0.0", 4],
  ["240.0.0.0", 4], // includes 255.255.255.255
];

const v4Ranges = V4_NON_GLOBAL.map(([base, bits]) => {
  const mask = bits === 0 ? 0 : (~0 << (32 - bits)) >>> 0;
  return { net: (v4ToInt(base) & mask) >>> 0, mask };
});

/**
 * True only for an IP address a public push service could have. Anything
 * that is not an address, or is loopback, private, link-local, CGNAT,
 * unspecified, multicast, documentation or otherwise not globally
 * reachable, is false: callers refuse what this does not vouch for.
 */
export function isGlobalAddress(ip: string): boolean {
  // A zone index only makes sense for link-local and other scoped addresses.
  if (ip.includes("%")) return false;
  if (isIPv4(ip)) return isGlobalV4(v4ToInt(ip));
  if (isIPv6(ip)) return isGlobalV6(v6Bytes(ip));
  return false;
}

function isGlobalV4(n: number): boolean {
  return !v4Ranges.some((r) => ((n & r.mask) >>> 0) === r.net);
}

function isGlobalV6(b: Uint8Array): boolean {
  const zeros = (from: number, to: number) => b.subarray(from, to).every((x) => x === 0);
  const embeddedV4 = () => ((b[12]! << 24) | (b[13]! << 16) | (b[14]! << 8) | b[15]!) >>> 0;
  // ::ffff:a.b.c.d reaches the IPv4 address itself on a dual-stack socket.
  if (zeros(0, 10) && b[10] === 0xff && b[11] === 0xff) return isGlobalV4(embeddedV4());
  // NAT64 (64:ff9b::/96): what DNS64 hands an IPv6-only host for a public IPv4 name.
  if (b[0] === 0x00 && b[1] === 0x64 && b[2] === 0xff && b[3] === 0x9b && zeros(4, 12)) return isGlobalV4(embeddedV4());
  // Global unicast is 2000::/3; everything else (::, ::1, fc00::/7,
  // fe80::/10, fec0::/10, ff00::/8, v4-compatible, discard) is not.
  if ((b[0]! & 0xe0) !== 0x20) return false;
  const hextet = (i: number) => (b[2 * i]! << 8) | b[2 * i + 1]!;
  const h0 = hextet(0);
  const h1 = hextet(1);
  if (h0 === 0x2001 && h1 < 0x0200) return false; // 2001::/23 IETF protocol assignments (Teredo, benchmarking, ORCHID)
  if (h0 === 0x2001 && h1 === 0x0db8) return false; // documentation
  if (h0 === 0x2002) return false; // 6to4: embeds an IPv4 address we cannot vouch for
  if (h0 === 0x3fff && h1 < 0x1000) return false; // 3fff::/20 documentation
  return true;
}

function v4ToInt(ip: string): number {
  return ip.split(".").reduce((n, part) => ((n << 8) | Number(part)) >>> 0, 0);
}

/** The 16 bytes of a valid IPv6 address (isIPv6 already said so). */
function v6Bytes(ip: string): Uint8Array {
  let text = ip.toLowerCase();
  const tail: number[] = [];
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (dotted) {
    const n = v4ToInt(dotted[1]!);
    tail.push(n >>> 16, n & 0xffff);
    text = text.slice(0, -dotted[1]!.length);
    if (text.endsWith(":") && !text.endsWith("::")) text = text.slice(0, -1);
  }
  const parse = (s: string) => (s === "" ? [] : s.split(":").map((h) => parseInt(h, 16)));
  const [head, rest] = text.split("::") as [string, string | undefined];
  const left = parse(head);
  const right = [...parse(rest ?? ""), ...tail];
  const fill = rest === undefined ? [] : new Array<number>(8 - left.length - right.length).fill(0);
  const hextets = [...left, ...fill, ...right];
  const bytes = new Uint8Array(16);
  hextets.forEach((h, i) => {
    bytes[2 * i] = h >> 8;
    bytes[2 * i + 1] = h & 0xff;
  });
  return bytes;
}
