import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { apiClients, signUp } from "../support/api.js";
import { removeDataDir, startChatd, type ChatdProcess } from "../support/chatd.js";
import { runBackup, wholeHistory } from "../support/backup.js";
import { TestDevice } from "../support/device.js";
import { waitFor } from "../support/wait.js";
import { openDatabase } from "../../internal/storage/sqlite/database.js";

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, "../..");

describe("npm run backup: a copy of chatd's data directory", function () {
  this.timeout(180_000);
  const started: ChatdProcess[] = [];
  const dirs: string[] = [];
  const devices: TestDevice[] = [];

  after(async () => {
    for (const d of devices) await d.close();
    for (const c of started) await c.stop().catch(() => undefined);
    for (const d of [...started.map((c) => c.dataDir), ...dirs]) removeDataDir(d);
  });

  it("copies a consistent snapshot while messages keep coming, which a second chatd serves: accounts, tokens, history, inboxes", async () => {
    const chatd = await startChatd();
    started.push(chatd);
    const [alice, bob] = [await signUp(chatd.httpUrl, "bk"), await signUp(chatd.httpUrl, "bk")];
    const dm = (await alice.api.channels.openDirect({ userId: bob.userId })).channel!.channelId;
    const sender = await new TestDevice(chatd.wsUrl, alice.devices[0]!.token).connect();
    devices.push(sender);
    for (let i = 0; i < 20; i++) assert.equal((await sender.send(dm, `before ${i}`)).kind.case, "sendAck");

    // Sends go on through the whole backup: the snapshot must hold a gap-free prefix of them.
    let sending = true;
    let acked = 0;
    const traffic = (async () => {
      for (let i = 0; sending && i < 5000; i++) if ((await sender.send(dm, `during ${i}`)).kind.case === "sendAck") acked++;
    })();
    await waitFor(() => acked >= 5, "sends under way");
    const ackedBefore = 20 + acked;
    const target = join(mkdtempSync(join(tmpdir(), "chatd-backup-")), "copy");
    dirs.push(resolve(target, ".."));
    const result = await runBackup(chatd.dataDir, target);
    sending = false;
    await traffic;
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /^backed up .* to .*copy in [\d.]+ s: queue\.db \([\d.]+ MiB\), chat\.db \([\d.]+ MiB\); keys, vapid\.json\n$/);
    assert.deepEqual(readdirSync(target).sort(), ["chat.db", "keys", "queue.db", "vapid.json"]);

    const restored = await startChatd({ dataDir: target });
    started.push(restored);
    // The signing keys came along: a token from before the backup still signs in.
    const all = await wholeHistory(restored.httpUrl, alice.devices[0]!.token, dm);
    assert.ok(all.length >= ackedBefore, `every message acked before the backup began is in it (${all.length} < ${ackedBefore})`);
    assert.deepEqual(all.map((m) => m.seq), all.map((_, i) => BigInt(i + 1)), "seqs from 1 with no gap");
    const during = all.length - 20;
    assert.deepEqual(all.map((m) => m.text), [...[...Array(20).keys()].map((i) => `before ${i}`), ...[...Array(during).keys()].map((i) => `during ${i}`)]);
    // One transaction: bob's inbox holds exactly the messages the history holds.
    const inbox: bigint[] = [];
    for (;;) {
      const page = await apiClients(restored.httpUrl, bob.devices[0]!.token).messages.syncInbox({ afterInboxSeq: BigInt(inbox.length), limit: 500 });
      inbox.push(...page.entries.map((e) => e.message!.seq));
      if (page.entries.length === 0) break;
    }
    assert.deepEqual(inbox, all.map((m) => m.seq));
    // Passwords too.
    const login = await apiClients(restored.httpUrl).auth.login({ username: bob.username, password: bob.password, device: { name: "restored" } });
    assert.equal(login.credentials!.userId, bob.userId);
  });

  it("makes every file of the copy readable by its owner alone: the databases hold password and token hashes", async () => {
    const base = mkdtempSync(join(tmpdir(), "chatd-backup-"));
    dirs.push(base);
    const data = join(base, "data");
    mkdirSync(join(data, "keys"), { recursive: true });
    openDatabase(join(data, "chat.db")).close();
    openDatabase(join(data, "queue.db")).close();
    writeFileSync(join(data, "keys", "token-ed25519.key.pem"), "key", { mode: 0o600 });
    const result = await runBackup(data, join(base, "copy"));
    assert.equal(result.code, 0, result.stderr);
    const modes = Object.fromEntries(
      ["", "chat.db", "queue.db", "keys", "keys/token-ed25519.key.pem"].map((p) => [p || ".", (statSync(join(base, "copy", p)).mode & 0o777).toString(8)]),
    );
    assert.deepEqual(modes, { ".": "700", "chat.db": "600", "queue.db": "600", keys: "755", "keys/token-ed25519.key.pem": "600" });
  });

  it("when the copy cannot be written (a full disk) names the database and where its copy was going, and leaves nothing there", async () => {
    const base = mkdtempSync(join(tmpdir(), "chatd-backup-"));
    dirs.push(base);
    const data = join(base, "data");
    mkdirSync(data);
    // Open, as chatd holds it (its WAL beside it): copied by VACUUM INTO.
    const db = openDatabase(join(data, "chat.db"));
    try {
      const insert = db.prepare("INSERT INTO users (user_id, username, username_lower, display_name, password_hash, created_at_ms) VALUES (?, ?, ?, 'U', ?, 0)");
      db.transaction(() => {
        for (let i = 1; i <= 2000; i++) insert.run(BigInt(i), `u${i}`, `u${i}`, "h".repeat(200));
      })();
      // A disk with room for 200 KiB: past it a write fails with EFBIG, as on a full disk with ENOSPC.
      const script = `trap '' XFSZ; ulimit -f 200; exec "$0" --import tsx cmd/chatd-backup/main.ts "$1"`;
      const full = await run("bash", ["-c", script, process.execPath, join(base, "copy")], { cwd: ROOT, env: { ...process.env, CHAT_DATA_DIR: data } }).then(
        () => ({ code: 0, stderr: "" }),
        (err: { code?: number; stderr?: string }) => ({ code: err.code, stderr: err.stderr ?? "" }),
      );
      assert.equal(full.code, 1);
      // SQLite says "disk I/O error" for EFBIG, "database or disk is full" for ENOSPC: neither names a file.
      assert.equal(full.stderr.replace(/: (disk I\/O error|database or disk is full)\n$/, ""), `backup: copying ${join(data, "chat.db")} to ${base}`);
      assert.deepEqual(readdirSync(base), ["data"]);
    } finally {
      db.close();
    }
  });

  it("refuses a target inside the data directory also when CHAT_DATA_DIR is a symlink to it", async () => {
    const base = mkdtempSync(join(tmpdir(), "chatd-backup-"));
    dirs.push(base);
    const data = join(base, "data");
    mkdirSync(data);
    openDatabase(join(data, "chat.db")).close();
    symlinkSync(data, join(base, "link"));
    const result = await runBackup(join(base, "link"), join(data, "copy"));
    assert.equal(result.code, 1);
    assert.equal(result.stderr, `backup: the backup cannot go inside the data directory ${join(base, "link")}\n`);
    assert.deepEqual(readdirSync(data), ["chat.db"]);
  });

  it("refuses a target that exists and a directory with no chatd data, saying why and writing nothing", async () => {
    const base = mkdtempSync(join(tmpdir(), "chatd-backup-"));
    dirs.push(base);
    const data = join(base, "data");
    mkdirSync(data);
    const noData = await runBackup(data, join(base, "copy"));
    assert.equal(noData.code, 1);
    assert.match(noData.stderr, /^backup: no chatd data in .*data \(chat\.db is missing\)\n$/);
    assert.equal(existsSync(join(base, "copy")), false);

    writeFileSync(join(data, "chat.db"), "");
    const taken = join(base, "taken");
    mkdirSync(taken);
    const exists = await runBackup(data, taken);
    assert.equal(exists.code, 1);
    assert.match(exists.stderr, /taken exists: a backup goes to a new directory and never overwrites one/);
    assert.deepEqual(readdirSync(taken), []);

    const usage = await runBackup(data);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /^usage: npm run backup -- <new directory>/);
    // Asked for, the usage is an answer, not a failure (and goes where a pager reads it).
    const help = await runBackup(data, "--help");
    assert.deepEqual([help.code, help.stderr], [0, ""]);
    assert.match(help.stdout, /^usage: npm run backup -- <new directory>.*\n.*--restore <backup directory>/);
    assert.deepEqual(readdirSync(base).sort(), ["data", "taken"], "no partial copy left behind");
  });
});
