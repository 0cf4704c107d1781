import assert from "node:assert/strict";
import { waitFor } from "../../test/support/wait.js";
import { kafkajsRequestQueue } from "./kafkajs-request-queue.js";
// Importing the adapter is what puts the mend in place, as in every process that uses Kafka.
import "./kafka.js";

interface Queue {
  pending: unknown[];
  inflight: Map<number, unknown>;
  throttledUntil: number;
  throttleCheckTimeoutId: NodeJS.Timeout | null;
  push(request: unknown): void;
  fulfillRequest(response: { correlationId: number; payload: Buffer | null; size: number }): void;
  maybeThrottle(ms: number): void;
  destroy(): void;
}

const quiet = { debug() {}, info() {}, warn() {}, error() {} };

function requestQueue(maxInFlightRequests: number | null = null): Queue {
  const RequestQueue = kafkajsRequestQueue() as unknown as new (o: object) => Queue;
  return new RequestQueue({ maxInFlightRequests, requestTimeout: 30_000, enforceRequestTimeout: false, clientId: "t", broker: "b:1", logger: quiet });
}

/** A request as kafkajs's Connection pushes it; `sent` resolves when the queue hands it to the socket. */
function request(correlationId: number) {
  let sent!: () => void;
  const wasSent = new Promise<void>((r) => (sent = r));
  const entry = { correlationId, apiName: "Fetch", apiKey: 1, apiVersion: 11, resolve() {}, reject() {} };
  return { wasSent, pushed: { entry, expectResponse: true, requestTimeout: 30_000, sendRequest: () => sent() } };
}

describe("kafkajs request queue (mended)", () => {
  it("arms no timer once every request is answered: an idle connection does not spin", () => {
    const q = requestQueue();
    const r = request(1);
    q.push(r.pushed);
    assert.equal(q.inflight.size, 1);
    q.fulfillRequest({ correlationId: 1, payload: null, size: 0 });
    // kafkajs 2.2.4 left a timer of -1 ms here, re-armed by itself every millisecond.
    assert.equal(q.throttleCheckTimeoutId, null);
    q.destroy();
  });

  it("still sends a request held back by a broker's throttle once the throttle ends", async () => {
    const q = requestQueue();
    q.maybeThrottle(30);
    const r = request(2);
    q.push(r.pushed);
    assert.equal(q.pending.length, 1, "held while throttled");
    assert.notEqual(q.throttleCheckTimeoutId, null, "a check is armed for the throttle's end");
    await r.wasSent;
    assert.equal(q.pending.length, 0);
    q.fulfillRequest({ correlationId: 2, payload: null, size: 0 });
    assert.equal(q.throttleCheckTimeoutId, null);
    q.destroy();
  });

  it("sends a request held back by the in-flight limit when the one before it is answered", async () => {
    const q = requestQueue(1);
    const first = request(3);
    const second = request(4);
    q.push(first.pushed);
    q.push(second.pushed);
    assert.equal(q.pending.length, 1);
    q.fulfillRequest({ correlationId: 3, payload: null, size: 0 });
    await second.wasSent;
    q.fulfillRequest({ correlationId: 4, payload: null, size: 0 });
    // The check push() armed for the held request runs once and arms no other
    // (unmended, it re-arms itself every millisecond and this never ends).
    await waitFor(() => q.throttleCheckTimeoutId === null, "the check to run and arm no other", 5_000, 5);
    q.destroy();
  });
});
