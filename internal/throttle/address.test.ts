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
