import assert from "node:assert/strict";
import { addressKey } from "./address.js";

describe("addressKey: a proxy's header that carries the client's port too", () => {
  it("keys an address by its host alone, as some proxies (Azure's) write it with the port: one key per connection is no limit", () => {
    assert.equal(addressKey("203.0.113.5:54321"), "203.0.113.5");
    assert.equal(addressKey("203.0.113.5:1"), addressKey("203.0.113.5"));
    assert.equal(addressKey("[2001:db8::1]:443"), "2001:db8:0:0::/64");
    assert.equal(addressKey("[2001:db8::1]"), "2001:db8:0:0::/64");
    assert.equal(addressKey("[::ffff:192.0.2.7]:80"), "192.0.2.7");
    // An IPv6 address without brackets is never read as one with a port.
    assert.equal(addressKey("2001:db8::1:80"), "2001:db8:0:0::/64");
  });
});

describe("addressKey: one address in any spelling a proxy may write", () => {
  it("keys an IPv4-mapped address as its IPv4 address however it is spelled, and never as the /64 of ::", () => {
    for (const spelling of ["::ffff:192.0.2.7", "::FFFF:192.0.2.7", "::ffff:c000:207", "::FFFF:C000:0207", "0:0:0:0:0:ffff:192.0.2.7", "0000:0000:0000:0000:0000:ffff:c000:0207", "[::ffff:c000:207]:443"]) {
      assert.equal(addressKey(spelling), "192.0.2.7", spelling);
    }
    assert.equal(addressKey("::ffff:7f00:1"), "127.0.0.1");
    assert.notEqual(addressKey("::ffff:c000:207"), addressKey("::ffff:c000:208"), "two clients, two keys");
  });

  it("keys an IPv4 client translated into NAT64's well-known prefix (64:ff9b::/96) as its IPv4 address: as the prefix's /64 every IPv4 client shared one bucket", () => {
    for (const spelling of ["64:ff9b::192.0.2.7", "64:ff9b::c000:207", "64:FF9B:0:0:0:0:C000:0207", "[64:ff9b::c000:207]:443"]) {
      assert.equal(addressKey(spelling), "192.0.2.7", spelling);
    }
    assert.notEqual(addressKey("64:ff9b::c000:207"), addressKey("64:ff9b::c000:208"), "two clients, two keys");
    // Only the /96 carries an IPv4 address there; the rest of its /64 is keyed as any IPv6 address.
    assert.equal(addressKey("64:ff9b::1:c000:207"), "64:ff9b:0:0::/64");
  });

  it("keys an IPv6 address's /64 alike in upper case, with leading zeros, uncompressed or with a zone", () => {
    for (const spelling of ["2001:db8::1", "2001:DB8::1", "2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8:0:0:ffff::1", "2001:db8::1%eth0"]) {
      assert.equal(addressKey(spelling), "2001:db8:0:0::/64", spelling);
    }
    assert.equal(addressKey("::1"), "0:0:0:0::/64");
  });
});
