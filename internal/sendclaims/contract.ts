import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { waitFor } from "../../test/support/wait.js";
import { sendKey, type SendClaims } from "./port.js";

export interface ClaimsFixture {
  claims: SendClaims;
  dispose(): Promise<void>;
}

/**
 * The SendClaims contract. Every adapter runs it unchanged; keys are random
 * per test, so a shared real Redis can be used. `makeFixture(ttlMs)` must
 * honour the TTL it is given.
 */
export function sendClaimsContract(name: string, makeFixture: (ttlMs: number) => Promise<ClaimsFixture>): void {
  describe(`SendClaims contract: ${name}`, function () {
    this.timeout(30_000);
    const fixtures: ClaimsFixture[] = [];
    const open = async (ttlMs = 60_000) => {
      const fx = await makeFixture(ttlMs);
      fixtures.push(fx);
      return fx.claims;
    };
    afterEach(async () => {
      await Promise.all(fixtures.splice(0).map((f) => f.dispose()));
    });
    const key = (clientMsgId = randomUUID()) => sendKey(1n, 2n, 3n, clientMsgId);

    it("gives a send's key to the first claim; later claims get that id back", async () => {
      const claims = await open();
      const k = key();
      assert.equal(await claims.claim(k, 101n), 101n);
      assert.equal(await claims.claim(k, 202n), 101n);
      assert.equal(await claims.claim(k, 101n), 101n, "the holder's own claim again");
    });

    it("keeps keys apart, and ids at full 64-bit width", async () => {
      const claims = await open();
      const big = 9_223_372_036_854_775_807n;
      const [a, b] = [key(), key()];
      assert.deepStrictEqual(await Promise.all([claims.claim(a, big), claims.claim(b, 5n)]), [big, 5n]);
      assert.equal(await claims.claim(a, 6n), big);
    });

    it("settles concurrent claims of one key on one holder", async () => {
      const claims = await open();
      const k = key();
      const ids = await Promise.all([1n, 2n, 3n, 4n].map((id) => claims.claim(k, id)));
      assert.equal(new Set(ids).size, 1, `holders: ${ids.join(", ")}`);
    });

    it("lets a claim lapse after its ttl", async () => {
      const claims = await open(300);
      const k = key();
      assert.equal(await claims.claim(k, 1n), 1n);
      await waitFor(async () => (await claims.claim(k, 2n)) === 2n, "the claim to lapse", 10_000, 50);
    });
  });
}
