import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readdirSync, truncateSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { apiClients, signUp } from "../support/api.js";
import { runBackup, wholeHistory } from "../support/backup.js";
import { removeDataDir, startChatd, type ChatdProcess } from "../support/chatd.js";
import { TestDevice } from "../support/device.js";

describe("npm run backup -- --restore: a backup put back in place", function () {
  this.timeout(180_000);
  const started: ChatdProcess[] = [];
  const dirs: string[] = [];
  const devices: TestDevice[] = [];

  after(async () => {
    for (const d of devices) await d.close();
    for (const c of started) await c.stop().catch(() => undefined);
    for (const d of [...started.map((c) => c.dataDir), ...dirs]) removeDataDir(d);
  });

  it("over the directory a crashed chatd left (its WAL included), which then serves exactly the backup; the old data is kept aside", async () => {
    const chatd = await startChatd();
    started.push(chatd);
    const [alice, bob] = [await signUp(chatd.httpUrl, "rs"), await signUp(chatd.httpUrl, "rs")];
    const dm = (await alice.api.channels.openDirect({ userId: bob.userId })).channel!.channelId;
    const sender = await new TestDevice(chatd.wsUrl, alice.devices[0]!.token).connect();
    devices.push(sender);
    for (let i = 0; i < 30; i++) assert.equal((await sender.send(dm, `kept ${i}`)).kind.case, "sendAck");
    const base = mkdtempSync(join(tmpdir(), "chatd-restore-"));
    dirs.push(base);
    const copy = join(base, "copy");
    const made = await runBackup(chatd.dataDir, copy);
    assert.equal(made.code, 0, made.stderr);
    // Traffic after the backup, then a crash: chat.db-wal stays with what the backup does not hold.
    for (let i = 0; i < 300; i++) assert.equal((await sender.send(dm, `lost ${i} ${"x".repeat(2000)}`)).kind.case, "sendAck");
    await sender.close();
    await chatd.kill();
    assert.ok(existsSync(join(chatd.dataDir, "chat.db-wal")), "the crash left a WAL");

    const restored = await runBackup(chatd.dataDir, "--restore", copy);
    assert.equal(restored.code, 0, restored.stderr);
    assert.match(restored.stdout, /^restored .*copy to .*: queue\.db, chat\.db, keys, vapid\.json; what it held before is in .*\.before-restore-[\dT-]+Z\n$/);
    const before = /what it held before is in (.*)\n$/.exec(restored.stdout)![1]!;
    dirs.push(before);
    assert.ok(readdirSync(before).includes("chat.db-wal"), "the old WAL went with the old data");
    assert.deepEqual(readdirSync(chatd.dataDir).sort(), ["chat.db", "keys", "queue.db", "vapid.json"]);
    assert.deepEqual(readdirSync(copy).sort(), ["chat.db", "keys", "queue.db", "vapid.json"], "the backup is left as it was");

    const again = await startChatd({ dataDir: chatd.dataDir });
    started.push(again);
    assert.deepEqual((await wholeHistory(again.httpUrl, alice.devices[0]!.token, dm)).map((m) => m.text), [...Array(30).keys()].map((i) => `kept ${i}`));
    const login = await apiClients(again.httpUrl).auth.login({ username: bob.username, password: bob.password, device: { name: "restored" } });
    assert.equal(login.credentials!.userId, bob.userId);

    // With that chatd running, a restore touches nothing.
    const refused = await runBackup(again.dataDir, "--restore", copy);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /^restore: CHAT_DATA_DIR=.*: in use by another chatd \(pid \d+, .*chatd\.lock\): stop chatd first\n$/);
    assert.equal(readdirSync(resolve(again.dataDir, "..")).filter((n) => n.includes("restoring")).length, 0);
  });

  it("refuses a damaged backup before moving anything", async () => {
    const chatd = await startChatd();
    started.push(chatd);
    await signUp(chatd.httpUrl, "rd");
    const base = mkdtempSync(join(tmpdir(), "chatd-restore-"));
    dirs.push(base);
    const copy = join(base, "copy");
    assert.equal((await runBackup(chatd.dataDir, copy)).code, 0);
    await chatd.stop();
    const held = readdirSync(chatd.dataDir).sort();
    truncateSync(join(copy, "chat.db"), Math.floor(statSync(join(copy, "chat.db")).size / 2));
    const refused = await runBackup(chatd.dataDir, "--restore", copy);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /^restore: .*(malformed|quick_check)/);
    assert.deepEqual(readdirSync(chatd.dataDir).sort(), held, "the data directory as it was");
    assert.deepEqual(readdirSync(base), ["copy"]);
  });
});
