import assert from "node:assert/strict";
import { PresenceStatus, type Presence } from "../../gen/es/chat/v1/types_pb.js";
import { TestDevice } from "./device.js";
import { waitFor } from "./wait.js";

/** A device that heartbeats like a real client and collects the presence events it is sent. */
export class PresenceWatcher {
  private timer?: NodeJS.Timeout;
  constructor(readonly device: TestDevice) {}

  static async open(wsUrl: string, token: string, heartbeatMs: number): Promise<PresenceWatcher> {
    const w = new PresenceWatcher(await new TestDevice(wsUrl, token).connect());
    w.timer = setInterval(() => w.device.sendFrame({ kind: { case: "heartbeat", value: {} } }), heartbeatMs / 2);
    return w;
  }

  events(of?: bigint): Presence[] {
    return this.device.frames
      .flatMap((f) => (f.kind.case === "presence" && f.kind.value.presence ? [f.kind.value.presence] : []))
      .filter((p) => of === undefined || p.userId === of);
  }

  statuses(of: bigint): PresenceStatus[] {
    return this.events(of).map((p) => p.status);
  }

  /**
   * Waits until this device has heard as many events about `of` as `expected`
   * holds, then requires exactly those: an event too many (a flap, a flip told
   * twice) fails here with both lists, not as a timeout further on.
   */
  async hears(of: bigint, expected: readonly PresenceStatus[], what: string, timeoutMs?: number): Promise<void> {
    await waitFor(() => this.statuses(of).length >= expected.length, what, timeoutMs);
    assert.deepEqual(
      this.statuses(of).map((s) => PresenceStatus[s]),
      expected.map((s) => PresenceStatus[s]),
      what,
    );
  }

  /** Stops heartbeating without closing (the device's process froze or its network died). */
  silence(): void {
    clearInterval(this.timer);
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.device.close();
  }
}
