import assert from "node:assert/strict";
import { isGlobalAddress } from "./addresses.js";

describe("push: which addresses are public (isGlobalAddress)", () => {
  const nonGlobal = [
    // IPv4: this network, RFC 1918, CGNAT, loopback, link-local (cloud metadata), IETF, documentation, benchmarking, multicast, reserved, broadcast.
    "0.0.0.0", "0.1.2.3", "10.0.0.1", "10.255.255.255", "100.64.0.1", "100.127.255.254", "127.0.0.1", "127.8.9.10",
    "169.254.169.254", "172.16.0.1", "172.31.255.255", "192.0.0.8", "192.0.2.1", "192.88.99.1", "192.168.1.1",
    "198.18.0.1", "198.19.255.255", "198.51.100.7", "203.0.113.9", "224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255",
    // IPv6: unspecified, loopback, ULA, link-local (with and without a zone), site-local, multicast, discard, v4-compatible.
    "::", "::1", "fc00::1", "fd12:3456:789a::1", "fe80::1", "fe80::1%eth0", "febf::1", "fec0::1", "ff02::1", "100::1", "::7f00:1",
    // IPv6 inside 2000::/3 that is not global: IETF (Teredo, benchmarking), documentation, 6to4.
    "2001::1", "2001:0:4136:e378::1", "2001:2::1", "2001:db8::1", "2002:7f00:1::1", "3fff::1",
    // IPv4-mapped and NAT64 forms of private addresses.
    "::ffff:127.0.0.1", "::ffff:7f00:1", "::ffff:169.254.169.254", "::ffff:10.0.0.1", "64:ff9b::10.0.0.1", "64:ff9b::a9fe:a9fe", "64:ff9b:1::1",
    // Not addresses at all.
    "", "localhost", "1.2.3", "::ffff:1.2.3.4.5", "1::2::3",
  ];
  const global = [
    "1.1.1.1", "8.8.8.8", "100.63.255.255", "100.128.0.0", "142.250.74.110", "172.15.255.255", "172.32.0.0", "192.0.1.1", "198.20.0.0", "223.255.255.255",
    "2607:f8b0:4004:c1b::5f", "2a00:1450:4001:82a::200a", "2001:4860:4860::8888", "2600::", "::ffff:8.8.8.8", "::FFFF:142.250.74.110", "64:ff9b::8.8.8.8",
  ];
  for (const ip of nonGlobal) it(`refuses ${JSON.stringify(ip)}`, () => assert.equal(isGlobalAddress(ip), false));
  for (const ip of global) it(`accepts ${ip}`, () => assert.equal(isGlobalAddress(ip), true));
});
