import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, readFileSync, renameSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { signUp } from "../support/api.js";
import { runBackup, wholeHistory } from "../support/backup.js";
import { removeDataDir, startChatd, type ChatdProcess } from "../support/chatd.js";
import { TestDevice } from "../support/device.js";
import { restoreDataDir } from "../../internal/storage/sqlite/restore.js";

// A restore moves the data directory's content out, then the backup's in. Across
// file systems (a data directory that is a mount point, as a container's volume)
// each move is a copy of the whole database, and Ctrl-C, a kill or a full disk can
// stop it among them: the directory then holds half of the old data or half of
// the backup, which no chatd may start on.
describe("npm run backup -- --restore, stopped midway", function () {
  this.timeout(180_000);
  const started: ChatdProcess[] = [];
  const dirs: string[] = [];
  after(async () => {
    for (const c of started) await c.stop().catch(() => undefined);
    for (const d of dirs) removeDataDir(d);
  });

  /** Renames, as on one file system, until the `stopAt`-th move, which fails as a killed copy would end. */
  const movesUntil = (stopAt: number) => {
    let n = 0;
    return (from: string, to: string) => {
      if (++n === stopAt) throw new Error("stopped midway");
      renameSync(from, to);
    };
  };

  for (const [phase, stopAt] of [["moving the old data out", 2], ["moving the backup in", 6]] as const) {
    it(`keeps chatd off a directory left half-restored (${phase}), and a second restore finishes it, the old data whole in one place`, async () => {
      const chatd = await startChatd();
      started.push(chatd);
      dirs.push(chatd.dataDir);
      const [alice, bob] = [await signUp(chatd.httpUrl, "half"), await signUp(chatd.httpUrl, "half")];
      const dm = (await alice.api.channels.openDirect({ userId: bob.userId })).channel!.channelId;
      const a = await new TestDevice(chatd.wsUrl, alice.devices[0]!.token).connect();
      assert.equal((await a.send(dm, "in the backup")).kind.case, "sendAck");
      const base = mkdtempSync(join(tmpdir(), "chatd-restore-stopped-"));
      dirs.push(base);
      const copy = join(base, "copy");
      const made = await runBackup(chatd.dataDir, copy);
      assert.equal(made.code, 0, made.stderr);
      assert.equal((await a.send(dm, "after the backup")).kind.case, "sendAck");
      await a.close();
      await chatd.stop();
      const held = readdirSync(chatd.dataDir).sort();
      const chatDb = readFileSync(join(chatd.dataDir, "chat.db"));

      let times = 0;
      const at = () => new Date(Date.UTC(2026, 0, 1, 0, 0, times++));
      assert.throws(() => restoreDataDir(copy, chatd.dataDir, at, undefined, movesUntil(stopAt)), /stopped midway/);
      await assert.rejects(startChatd({ dataDir: chatd.dataDir }), (err: Error) => {
        assert.match(err.message, /exited with 2 before listening/);
        assert.match(err.message, /CHAT_DATA_DIR=".*": a restore into it did not finish \(chatd\.restoring\); run npm run backup -- --restore <backup> again/);
        return true;
      });
      const refused = await runBackup(chatd.dataDir, join(base, "of-the-half"));
      assert.equal(refused.code, 1);
      assert.match(refused.stderr, /is half restored \(chatd\.restoring\): a restore into it did not finish; run it again/);

      const report = restoreDataDir(copy, chatd.dataDir, at);
      const before = `${chatd.dataDir}.before-restore-2026-01-01T00-00-00-000Z`;
      dirs.push(before);
      assert.equal(report.before, before, "the first restore's place for the old data");
      assert.deepEqual(readdirSync(before).sort(), held, "all of the old data, in that one place");
      assert.ok(readFileSync(join(before, "chat.db")).equals(chatDb), "the old chat.db as it was");
      assert.deepEqual(readdirSync(chatd.dataDir).sort(), ["chat.db", "keys", "queue.db", "vapid.json"]);
      assert.deepEqual(readdirSync(base), ["copy"], "nothing left beside the backup");
      assert.deepEqual(readdirSync(dirname(chatd.dataDir)).filter((n) => n.startsWith(`.${basename(chatd.dataDir)}.`)), [], "no staging left");

      const again = await startChatd({ dataDir: chatd.dataDir });
      started.push(again);
      assert.deepEqual((await wholeHistory(again.httpUrl, alice.devices[0]!.token, dm)).map((m) => m.text), ["in the backup"]);
    });
  }
});
