import type { AccountStore } from "../accounts/store.js";
import { waitFor } from "../../test/support/wait.js";
import { DeviceGate } from "./device-gate.js";

describe("DeviceGate's recheck", () => {
  it("comes recheckMs after the last on the monotonic clock: a wall clock stepped back an hour let a device signed out elsewhere in for that hour", async () => {
    let revoked = false;
    const device = { userId: 1n, deviceId: 2n, name: "phone", platform: "ios", createdAtMs: 0, lastSeenAtMs: 0 } as const;
    const accounts = {
      getDevice: async () => ({ ...device, revoked }),
      getUser: async () => ({ userId: 1n, username: "u" }),
    } as unknown as AccountStore;
    const gate = new DeviceGate(accounts, { recheckMs: 20 });
    await gate.check(1n, 2n);
    // Signed out through another api process, which this one hears nothing of; then NTP steps the clock back.
    revoked = true;
    const wallNow = Date.now;
    Date.now = () => wallNow() - 3_600_000;
    try {
      const refused = async () => {
        try {
          await gate.check(1n, 2n);
          return false;
        } catch (err) {
          return /signed out/.test((err as Error).message);
        }
      };
      await waitFor(refused, "the device refused once recheckMs has passed", 3_000, 10);
    } finally {
      Date.now = wallNow;
    }
  });
});
