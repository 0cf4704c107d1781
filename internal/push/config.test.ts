import assert from "node:assert/strict";
import webpush from "web-push";
import { EnvReader } from "../config/env.js";
import { readPushConfig } from "./config.js";

describe("push configuration: CHAT_VAPID_PUBLIC_KEY and CHAT_VAPID_PRIVATE_KEY", () => {
  const problems = (env: Record<string, string>) => {
    const r = new EnvReader(env);
    readPushConfig(r);
    return r.problems;
  };
  const pair = webpush.generateVAPIDKeys();
  const other = webpush.generateVAPIDKeys();

  it("takes a pair as web-push generates it", () => {
    assert.deepEqual(problems({ CHAT_VAPID_PUBLIC_KEY: pair.publicKey, CHAT_VAPID_PRIVATE_KEY: pair.privateKey }), []);
  });

  it("refuses at start-up what no push could be signed with, naming the variable", () => {
    const base64 = (k: string) => Buffer.from(k, "base64url").toString("base64");
    for (const [env, why] of [
      [{ CHAT_VAPID_PUBLIC_KEY: base64(pair.publicKey), CHAT_VAPID_PRIVATE_KEY: pair.privateKey }, /^CHAT_VAPID_PUBLIC_KEY: expected base64url without padding/],
      [{ CHAT_VAPID_PUBLIC_KEY: pair.privateKey, CHAT_VAPID_PRIVATE_KEY: pair.publicKey }, /^CHAT_VAPID_PUBLIC_KEY: expected an uncompressed P-256 public key \(65 bytes\), got 32 bytes; are the two keys swapped\?/],
      [{ CHAT_VAPID_PUBLIC_KEY: pair.publicKey, CHAT_VAPID_PRIVATE_KEY: "abc" }, /^CHAT_VAPID_PRIVATE_KEY: expected a P-256 private key \(32 bytes\)/],
      [{ CHAT_VAPID_PUBLIC_KEY: pair.publicKey, CHAT_VAPID_PRIVATE_KEY: other.privateKey }, /not one key pair/],
    ] as const) {
      const found = problems(env);
      assert.equal(found.length, 1, found.join("; "));
      assert.match(found[0]!, why);
    }
  });
});

describe("push configuration: CHAT_APNS_URL and CHAT_FCM_URL", () => {
  const read = (env: Record<string, string>) => {
    const r = new EnvReader({ CHAT_APNS_KEY_FILE: "k.p8", CHAT_APNS_KEY_ID: "K", CHAT_APNS_TEAM_ID: "T", CHAT_FCM_SERVICE_ACCOUNT_FILE: "sa.json", ...env });
    return { config: readPushConfig(r), problems: r.problems };
  };

  it("takes the services' origins, a local stand-in's too, without a trailing slash", () => {
    const { config, problems } = read({ CHAT_APNS_URL: "http://127.0.0.1:4430/", CHAT_FCM_URL: "https://fcm.example.com" });
    assert.deepEqual(problems, []);
    assert.equal(config.apns?.url, "http://127.0.0.1:4430");
    assert.equal(config.fcm?.url, "https://fcm.example.com");
    assert.equal(read({}).config.apns?.url, "https://api.push.apple.com");
  });

  it("refuses at start-up what no push could be sent to, naming the variable", () => {
    for (const [env, why] of [
      [{ CHAT_APNS_URL: "api.push.apple.com" }, /^CHAT_APNS_URL="api.push.apple.com": not a URL/],
      [{ CHAT_FCM_URL: "ftp://fcm.googleapis.com" }, /^CHAT_FCM_URL=.*: must be an https:\/\//],
      [{ CHAT_FCM_URL: "https://fcm.googleapis.com/v1" }, /^CHAT_FCM_URL=.*: must be the service's origin alone/],
    ] as const) {
      const { problems } = read(env);
      assert.equal(problems.length, 1, problems.join("; "));
      assert.match(problems[0]!, why);
    }
  });
});
