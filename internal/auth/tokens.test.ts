import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isChatError } from "../model/errors.js";
import { LIGHT_PASSWORD_PARAMS, PasswordHasher } from "./passwords.js";
import {
  generateKeys,
  keyIdOf,
  keysFromPem,
  loadOrCreateKeys,
  loadPublicKeys,
  MissingKeyError,
  PRIVATE_KEY_FILE,
  PUBLIC_KEY_FILE,
  publicKeyFromPem,
  TokenSigner,
  TokenVerifier,
} from "./tokens.js";

describe("auth: access tokens", () => {
  const clock = { ms: 1_800_000_000_000 };
  const now = () => clock.ms;
  const keys = generateKeys();
  const signer = new TokenSigner(keys, { now });
  const verifier = new TokenVerifier(keys.publicKey, { now });

  const fails = (token: string, code: string, message: RegExp) =>
    assert.throws(() => verifier.verify(token), (e) => isChatError(e) && e.code === code && message.test(e.message));

  it("round-trips the claims", () => {
    const { token, claims } = signer.sign({ userId: 2n ** 63n + 5n, deviceId: 7n });
    assert.match(token, /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);
    assert.deepEqual(verifier.verify(token), claims);
    assert.equal(claims.userId, 2n ** 63n + 5n);
    assert.equal(claims.expiresAtMs - claims.issuedAtMs, 15 * 60_000);
    assert.equal(claims.keyId, keys.keyId);
  });

  it("expires", () => {
    const { token } = signer.sign({ userId: 1n, deviceId: 2n });
    clock.ms += 15 * 60_000 - 1;
    verifier.verify(token);
    clock.ms += 1;
    fails(token, "token_expired", /expired/);
  });

  it("refuses tampered, foreign and malformed tokens", () => {
    const { token } = signer.sign({ userId: 1n, deviceId: 2n });
    const [body, sig] = token.split(".") as [string, string];
    const payload = JSON.parse(Buffer.from(body, "base64url").toString()) as Record<string, unknown>;
    const evil = Buffer.from(JSON.stringify({ ...payload, sub: "99" })).toString("base64url");
    fails(`${evil}.${sig}`, "unauthenticated", /signature/);

    const other = generateKeys();
    const foreign = new TokenSigner({ privateKey: other.privateKey, keyId: keys.keyId }, { now }).sign({ userId: 1n, deviceId: 2n });
    fails(foreign.token, "unauthenticated", /signature/);
    fails(new TokenSigner(other, { now }).sign({ userId: 1n, deviceId: 2n }).token, "unauthenticated", /unknown key/);

    for (const t of ["", "abc", "a.b.c", `${body}.`, `.${sig}`, "e30.AAAA"]) fails(t, "unauthenticated", /./);
  });

  it("verifies with several keys during a rotation", () => {
    const next = generateKeys();
    const both = new TokenVerifier([keys.publicKey, next.publicKey], { now });
    both.verify(signer.sign({ userId: 1n, deviceId: 1n }).token);
    both.verify(new TokenSigner(next, { now }).sign({ userId: 1n, deviceId: 1n }).token);
  });
});

describe("auth: key files", () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), "chat-keys-"))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it("creates a key pair once and loads the same one afterwards", async () => {
    const created = await loadOrCreateKeys(join(dir, "nested"));
    const loaded = await loadOrCreateKeys(join(dir, "nested"));
    assert.equal(loaded.keyId, created.keyId);
    assert.equal(statSync(join(dir, "nested", PRIVATE_KEY_FILE)).mode & 0o777, 0o600);

    // A verifier-only process needs nothing but the public PEM.
    const verifier = new TokenVerifier(publicKeyFromPem(readFileSync(join(dir, "nested", PUBLIC_KEY_FILE))));
    verifier.verify(new TokenSigner(loaded).sign({ userId: 1n, deviceId: 2n }).token);
    assert.equal(keysFromPem(readFileSync(join(dir, "nested", PRIVATE_KEY_FILE))).keyId, created.keyId);
  });

  it("writes the public key a start that died after making the private one left out, for the gateways waiting on it", async () => {
    const keys = generateKeys();
    writeFileSync(join(dir, PRIVATE_KEY_FILE), keys.privateKey.export({ format: "pem", type: "pkcs8" }), { mode: 0o600 });
    assert.equal((await loadOrCreateKeys(dir)).keyId, keys.keyId);
    const [published] = await loadPublicKeys(dir, 0);
    assert.equal(keyIdOf(published!), keys.keyId);
  });

  it("takes an empty public key file for one not written yet: the gateway waits on, rather than failing to read it", async () => {
    writeFileSync(join(dir, PUBLIC_KEY_FILE), "");
    await assert.rejects(loadPublicKeys(dir, 0), MissingKeyError);
  });

  it("names the key file that is no key, and says what it should hold", async () => {
    writeFileSync(join(dir, PRIVATE_KEY_FILE), "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n");
    await assert.rejects(loadOrCreateKeys(dir), (e: Error) => e.message.startsWith(`${join(dir, PRIVATE_KEY_FILE)} is not an Ed25519 private key in PKCS#8 PEM (`));
    writeFileSync(join(dir, PUBLIC_KEY_FILE), generateKeyPairSync("rsa", { modulusLength: 1024 }).publicKey.export({ format: "pem", type: "spki" }));
    await assert.rejects(loadPublicKeys(dir, 0), (e: Error) => e.message.startsWith(`${join(dir, PUBLIC_KEY_FILE)} is not an Ed25519 public key in SPKI PEM (`));
  });

  it("waits its time for the public key by the monotonic clock: a wall clock stepped forward an hour at boot (NTP) fails no gateway at once", async () => {
    const realNow = Date.now;
    const realMono = performance.now.bind(performance);
    let wallReads = 0;
    let monoReads = 0;
    // From its second read on, the wall clock is an hour ahead: set right while the gateway waits.
    Date.now = () => realNow() + (wallReads++ > 0 ? 3_600_000 : 0);
    performance.now = () => (monoReads++, realMono());
    try {
      let settled = false;
      const loading = loadPublicKeys(dir, 30_000).finally(() => (settled = true));
      loading.catch(() => {});
      // Until two polls after the first (every 200 ms) have looked at their deadline: the fourth read of
      // the monotonic clock, after the deadline's and the first poll's. Not waitFor, which reads the wall clock.
      while (!settled && monoReads < 4) await new Promise((r) => setTimeout(r, 10));
      const keys = await loadOrCreateKeys(dir); // the api starts
      const [published] = await loading;
      assert.equal(keyIdOf(published!), keys.keyId);
    } finally {
      Date.now = realNow;
      performance.now = realMono;
    }
  });

  it("agrees on one key when two starts race", async () => {
    const [x, y] = await Promise.all([loadOrCreateKeys(dir), loadOrCreateKeys(dir)]);
    assert.equal(x.keyId, y.keyId);
  });
});

describe("auth: passwords", () => {
  it("hashes with argon2id and verifies", async () => {
    const hasher = new PasswordHasher(LIGHT_PASSWORD_PARAMS);
    const hash = await hasher.hash("correct horse");
    assert.match(hash, /^\$argon2id\$/);
    assert.equal(await hasher.verify(hash, "correct horse"), true);
    assert.equal(await hasher.verify(hash, "wrong horse"), false);
    assert.equal(await hasher.verify("not a hash", "correct horse"), false);
    assert.equal(await hasher.verifyNothing("x"), false);
  });

  it("uses the OWASP baseline by default", async () => {
    assert.match(await new PasswordHasher().hash("correct horse"), /^\$argon2id\$v=19\$m=19456,t=2,p=1\$/);
  });
});
