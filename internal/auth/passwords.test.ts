import assert from "node:assert/strict";
import { hash } from "@node-rs/argon2";
import { LIGHT_PASSWORD_PARAMS, PasswordHasher } from "./passwords.js";

describe("auth: passwords", () => {
  const passwords = new PasswordHasher(LIGHT_PASSWORD_PARAMS);
  const composed = "caf\u00e9 horse battery"; // é as one code point (NFC)
  const decomposed = composed.normalize("NFD"); // e and a combining accent

  it("takes a password in any Unicode normalisation form: the same password typed on another device", async () => {
    assert.notEqual(composed, decomposed);
    const h = await passwords.hash(composed);
    assert.equal(await passwords.verify(h, decomposed), true);
    assert.equal(await passwords.verify(await passwords.hash(decomposed), composed), true);
    // Full-width forms, as some input methods type them, are their ASCII letters (NFKC).
    assert.equal(await passwords.verify(await passwords.hash("\uff50\uff41\uff53\uff53\uff57\uff4f\uff52\uff44"), "password"), true);
    assert.equal(await passwords.verify(h, "cafe horse battery"), false);
  });

  it("still takes a password whose hash was made before passwords were normalised, as typed then", async () => {
    const old = await hash(decomposed, { memoryCost: 1024, timeCost: 1, parallelism: 1 });
    assert.equal(await passwords.verify(old, decomposed), true);
    assert.equal(await passwords.verify(old, "caf horse battery"), false);
  });

  it("refuses anything against an unparsable hash (a deleted account's empty one)", async () => {
    assert.equal(await passwords.verify("", composed), false);
    assert.equal(await passwords.verifyNothing(composed), false);
  });
});
