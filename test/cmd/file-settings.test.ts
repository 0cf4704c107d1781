import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "../support/ports.js";
import { runToExit } from "../support/processes.js";

// Files the settings name (CHAT_KEYS_DIR, push credentials) that cannot serve: one line naming the
// setting and exit 2, as for a bad value, before any wait on an engine; it was an uncaught stack trace.
describe("api, gateway, notifier and chatd: files named by settings", function () {
  this.timeout(60_000);
  // Made in `before`: a run whose --grep skips the suite runs none of its hooks, and left a folder made as the file loaded.
  let dir = "";
  let notADir = "";
  let engines: Record<string, string>;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "chat-file-settings-"));
    notADir = join(dir, "a-file");
    writeFileSync(notADir, "");
    const away = `127.0.0.1:${await freePort()}`;
    // Nothing answers, and nothing is waited for: a file step that came after an engine fails the test.
    engines = {
      CHAT_ETCD_ENDPOINTS: away, CHAT_KAFKA_BROKERS: away, CHAT_CASSANDRA_CONTACT_POINTS: away, CHAT_REDIS_URL: `redis://${away}`,
      CHAT_START_TIMEOUT_S: "0", CHAT_HTTP_PORT: "0", CHAT_GRPC_PORT: "0", CHAT_OPS_PORT: "0",
    };
  });
  after(() => dir && rmSync(dir, { recursive: true, force: true }));

  const assertOneLine = (out: { code: number | null; stderr: string }, line: RegExp) => {
    assert.equal(out.code, 2, out.stderr);
    assert.match(out.stderr, line);
    assert.doesNotMatch(out.stderr, /^\s+at /m, "no stack trace");
  };

  it("a CHAT_KEYS_DIR that is not a directory", async () => {
    const keys = join(notADir, "keys");
    const [api, gateway, notifier] = await Promise.all([
      runToExit("api", { ...engines, CHAT_KEYS_DIR: keys }),
      runToExit("gateway", { ...engines, CHAT_KEYS_DIR: notADir }),
      runToExit("notifier", { ...engines, CHAT_KEYS_DIR: keys }),
    ]);
    assertOneLine(api, new RegExp(`^api: CHAT_KEYS_DIR=${JSON.stringify(keys)}: ENOTDIR`, "m"));
    assertOneLine(gateway, new RegExp(`^gateway: CHAT_KEYS_DIR=${JSON.stringify(notADir)}: ENOTDIR`, "m"));
    assertOneLine(notifier, new RegExp(`^notifier: CHAT_KEYS_DIR=${JSON.stringify(keys)}: ENOTDIR`, "m"));
  });

  it("an APNs key file that is not there", async () => {
    const missing = join(dir, "AuthKey.p8");
    const apns = { CHAT_APNS_KEY_FILE: missing, CHAT_APNS_KEY_ID: "K", CHAT_APNS_TEAM_ID: "T", CHAT_APNS_TOPIC: "app", CHAT_KEYS_DIR: join(dir, "keys") };
    const [api, notifier] = await Promise.all([runToExit("api", { ...engines, ...apns }), runToExit("notifier", { ...engines, ...apns })]);
    for (const [role, out] of [["api", api], ["notifier", notifier]] as const) {
      assertOneLine(out, new RegExp(`^${role}: CHAT_APNS_KEY_FILE=${JSON.stringify(missing)}: ENOENT`, "m"));
    }
  });

  it("chatd: an APNs key file that is not there, an FCM service account file that is not JSON", async () => {
    const missing = join(dir, "AuthKey.p8");
    const notJson = join(dir, "service-account.json");
    writeFileSync(notJson, "{\"project_id\":");
    const ports = { CHAT_HTTP_PORT: "0", CHAT_GRPC_PORT: "0" };
    const [apns, fcm] = await Promise.all([
      runToExit("chatd", { ...ports, CHAT_DATA_DIR: join(dir, "data-apns"), CHAT_APNS_KEY_FILE: missing, CHAT_APNS_KEY_ID: "K", CHAT_APNS_TEAM_ID: "T", CHAT_APNS_TOPIC: "app" }),
      runToExit("chatd", { ...ports, CHAT_DATA_DIR: join(dir, "data-fcm"), CHAT_FCM_SERVICE_ACCOUNT_FILE: notJson }),
    ]);
    assertOneLine(apns, new RegExp(`^chatd: CHAT_APNS_KEY_FILE=${JSON.stringify(missing)}: ENOENT`, "m"));
    assertOneLine(fcm, new RegExp(`^chatd: CHAT_FCM_SERVICE_ACCOUNT_FILE=${JSON.stringify(notJson)}: `, "m"));
  });
});
