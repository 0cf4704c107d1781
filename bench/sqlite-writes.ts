/**
 * What a message costs chatd's SQLite store, on its own: event-loop time and
 * bytes written per message, step after step, while the history grows. The
 * 1:1 latency scenario runs on a young database (a few hundred thousand
 * messages by its 5,000 msgs/s step); this shows where the price settles.
 *
 *   npx tsx bench/sqlite-writes.ts [--rate 5000] [--seconds 10] [--steps 12] [--members 2] [--page-size 4096] [--tick-ms 1] [--backstop-pages N]
 *
 * Open loop: every `--tick-ms` the messages due are handed to
 * SqliteMessageWriter.write (the group commit puts each turn's in one
 * transaction, so a commit holds rate × tick messages), over 500 channels,
 * each message to `--members` inboxes. From /proc/self/io: the process's write() bytes and calls (the WAL frames, and
 * the checkpointer thread copying them back into the database file), and the
 * bytes of pages it turned dirty in the page cache (a page written again
 * before the kernel flushed it counts once: near what the disk gets).
 */
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import Database from "better-sqlite3";
import { openSqliteStorage } from "../internal/storage/sqlite/index.js";
import type { Id, NewMessage } from "../internal/model/types.js";

const { values } = parseArgs({
  options: {
    rate: { type: "string", default: "5000" },
    seconds: { type: "string", default: "10" },
    steps: { type: "string", default: "12" },
    members: { type: "string", default: "2" },
    channels: { type: "string", default: "500" },
    "page-size": { type: "string", default: "4096" },
    "tick-ms": { type: "string", default: "1" },
    // The writing connection's own checkpoint (wal_autocheckpoint); empty: chatd's.
    "backstop-pages": { type: "string", default: "" },
  },
});
const rate = Number(values.rate);
const seconds = Number(values.seconds);
const members = Number(values.members);
const channels = Number(values.channels);

const dir = mkdtempSync(join(tmpdir(), "bench-sqlite-writes-"));
const path = join(dir, "chat.db");
// The page size of a database is fixed when its first page is written: write it before chatd's schema.
const raw = new Database(path);
raw.pragma(`page_size = ${Number(values["page-size"])}`);
raw.exec("CREATE TABLE page_size_probe (x); DROP TABLE page_size_probe;");
raw.close();
const storage = openSqliteStorage(path);
if (values["backstop-pages"]) storage.db.pragma(`wal_autocheckpoint = ${Number(values["backstop-pages"])}`);

/** write() bytes and calls; write_bytes counts a page once when it turns dirty (what the disk will get, about). */
const io = (): { wchar: number; syscw: number; disk: number } => {
  const kv = Object.fromEntries(
    readFileSync("/proc/self/io", "utf8").trim().split("\n").map((l) => l.split(": ") as [string, string]),
  );
  return { wchar: Number(kv.wchar), syscw: Number(kv.syscw), disk: Number(kv.write_bytes) };
};

const text = "x".repeat(64);
let nextId = 1n << 40n;
let sent = 0;

function message(): [NewMessage, Id[]] {
  const channel = BigInt(sent % channels) + 1n;
  const first = channel * BigInt(members);
  const memberIds = Array.from({ length: members }, (_, k) => first + BigInt(k));
  const id = ++nextId;
  sent++;
  const m: NewMessage = { messageId: id, channelId: channel, senderUserId: first, senderDeviceId: 1n, clientMsgId: String(id), text, sentAtMs: Date.now() };
  return [m, memberIds];
}

/** Each write's time from the call to its durable answer, ms: what a sender's ack waits for. */
async function step(): Promise<number[]> {
  const total = rate * seconds;
  const start = performance.now();
  const writes: Promise<unknown>[] = [];
  const latencies: number[] = [];
  for (let done = 0; done < total; ) {
    const due = Math.min(total, Math.floor(((performance.now() - start) / 1000) * rate));
    for (; done < due; done++) {
      const asked = performance.now();
      writes.push(storage.writer.write(...message()).then(() => latencies.push(performance.now() - asked)));
    }
    await sleep(Number(values["tick-ms"]));
  }
  await Promise.all(writes);
  return latencies.sort((a, b) => a - b);
}

const quantile = (sorted: number[], q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;

const rows = [
  `SQLite store, ${rate} msgs/s for ${seconds} s a step, a commit every ${values["tick-ms"]} ms, ${members} inboxes a message, ${channels} channels, page size ${values["page-size"]} B`,
  "",
  "| step | messages stored | database MB (WAL MB) | event loop busy | event-loop µs/msg | process CPU µs/msg | KB written/msg | write() calls/msg | KB dirtied/msg | write ms p50 / p99 / max |",
  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
];
for (let s = 0; s < Number(values.steps); s++) {
  const io0 = io();
  const cpu0 = process.cpuUsage();
  const elu0 = performance.eventLoopUtilization();
  const latencies = await step();
  const elu = performance.eventLoopUtilization(elu0);
  const cpu = process.cpuUsage(cpu0);
  const io1 = io();
  const n = rate * seconds;
  const cells = [
    s + 1,
    sent.toLocaleString("en-US"),
    `${(statSync(path).size / 1e6).toFixed(0)} (${(statSync(`${path}-wal`).size / 1e6).toFixed(0)})`,
    `${(elu.utilization * 100).toFixed(0)} %`,
    ((elu.active * 1000) / n).toFixed(0),
    ((cpu.user + cpu.system) / n).toFixed(0),
    ((io1.wchar - io0.wchar) / n / 1024).toFixed(1),
    ((io1.syscw - io0.syscw) / n).toFixed(1),
    ((io1.disk - io0.disk) / n / 1024).toFixed(1),
    [0.5, 0.99, 1].map((q) => quantile(latencies, q).toFixed(1)).join(" / "),
  ];
  rows.push(`| ${cells.join(" | ")} |`);
  console.error(rows.at(-1));
}
await storage.close();
rmSync(dir, { recursive: true, force: true });
console.log(rows.join("\n"));
