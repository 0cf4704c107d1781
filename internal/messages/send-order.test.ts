import assert from "node:assert/strict";
import { SendOrder } from "./send-order.js";

const ALICE = { userId: 1n, deviceId: 11n };
const turns = async (n = 5) => {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
};

describe("SendOrder", () => {
  it("keeps a send behind the one ahead of it when a send between them gives up early", async () => {
    const order = new SendOrder();
    const out: string[] = [];
    const a = order.take(ALICE, 7n); // a reply whose check is slow
    const b = order.take(ALICE, 7n); // refused by its check
    const c = order.take(ALICE, 7n); // a plain send
    b.done();
    void c.ready.then(() => out.push("c"));
    await turns();
    assert.equal(out.length, 0, "c waits for a, not only for b");
    await a.ready;
    out.push("a");
    a.done();
    await turns();
    assert.deepEqual(out, ["a", "c"]);
    c.done();
    await turns();
    assert.equal(order.size, 0, "nothing left once every send is done");
  });

  it("is clear for a line while none of its sends is out, whatever other lines hold (DirectSubmitter then takes no turn)", () => {
    const order = new SendOrder();
    assert.equal(order.clear(ALICE, 7n), true, "no line open at all");
    const a = order.take(ALICE, 7n);
    assert.equal(order.clear(ALICE, 7n), false, "a's send is still out");
    assert.equal(order.clear(ALICE, 8n), true, "another channel is another line");
    assert.equal(order.clear({ userId: 1n, deviceId: 12n }, 7n), true, "another device is another line");
    a.done();
    assert.equal(order.clear(ALICE, 7n), true, "through once done");
  });

  it("lets a send through at once when nobody is ahead, and passes a run of sends that gave up in one go", async () => {
    const order = new SendOrder();
    const a = order.take(ALICE, 7n);
    assert.equal(a.waiting, false, "nobody ahead: nothing to wait for");
    const b = order.take(ALICE, 7n);
    const c = order.take(ALICE, 7n);
    const d = order.take(ALICE, 7n);
    assert.equal(d.waiting, true);
    b.done();
    c.done();
    let dReady = false;
    void d.ready.then(() => (dReady = true));
    await turns();
    assert.equal(dReady, false, "d waits for a, not only for the two that gave up");
    a.done();
    await turns();
    assert.equal(dReady, true);
    assert.equal(d.waiting, false);
    d.done();
    assert.equal(order.size, 0, "nothing left once every send is done");
    assert.equal(order.take(ALICE, 7n).waiting, false, "the next send has nobody ahead");
  });

  it("lines up each device and channel on its own", async () => {
    const order = new SendOrder();
    const first = order.take(ALICE, 7n);
    let otherChannel = false;
    let otherDevice = false;
    void order.take(ALICE, 8n).ready.then(() => (otherChannel = true));
    void order.take({ userId: 1n, deviceId: 12n }, 7n).ready.then(() => (otherDevice = true));
    await turns();
    assert.equal(otherChannel && otherDevice, true);
    first.done();
  });
});
