import assert from "node:assert/strict";
import { SequencedAppender, type SequenceOps } from "./sequenced.js";
import { seededRandom } from "../../../test/support/random.js";

// The appender's reasoning, checked against every interleaving a seeded
// scheduler comes up with: writers replay one stream, start from the prefix
// some writer has finished (a committed offset), overlap, stall, and come
// back to the key after others appended to it. An in-memory store stands in
// for Cassandra with what the appender relies on: each request is applied at
// one moment, and the head keeps the write with the highest seq.

interface Rec {
  key: string;
  id: number;
}
interface Entry {
  rec: Rec;
  seq: bigint;
}

class Store {
  rows = new Map<bigint, Entry>();
  dedup = new Map<string, { seq: bigint; id: number }>();
  head: Entry | undefined;
  conflicts: string[] = [];
  /** How often a request fails: half of the failures after it was applied (a timeout). */
  failRate = 0.03;

  constructor(private readonly random: () => number) {}

  /** A request: it travels for a while, is applied at one moment, and the answer travels back. */
  async request<T>(apply: () => T): Promise<T> {
    await this.pause();
    const fails = this.random() < this.failRate;
    if (fails && this.random() < 0.5) throw new Error("unavailable");
    const result = apply();
    await this.pause();
    if (fails) throw new Error("timed out");
    return result;
  }

  private async pause(): Promise<void> {
    // Mostly quick, now and then slow: a request overtaken by several others.
    const n = Math.floor(this.random() * (this.random() < 0.1 ? 30 : 4));
    for (let i = 0; i < n; i++) await new Promise<void>((r) => setImmediate(r));
  }

  ops(): SequenceOps<Rec, Entry> {
    return {
      readHead: () => this.request(() => (this.head ? { seq: this.head.seq, entry: this.head, legacy: false } : undefined)),
      readHeadSeq: () => this.request(() => this.head?.seq ?? 0n),
      findSeq: (_k, c) =>
        this.request(() => {
          const d = this.dedup.get(c.key);
          return d ? { seq: d.seq, sameRecord: d.id === c.id } : undefined;
        }),
      readEntry: (_k, seq) => this.request(() => this.rows.get(seq)),
      writeEntry: async (_k, e) => {
        await Promise.all([
          this.request(() => {
            const was = this.rows.get(e.seq);
            if (was && was.rec.id !== e.rec.id) this.conflicts.push(`seq ${e.seq}: record ${was.rec.id} then ${e.rec.id}`);
            this.rows.set(e.seq, e);
          }),
          this.request(() => this.dedup.set(e.rec.key, { seq: e.seq, id: e.rec.id })),
        ]);
      },
      writeHead: (_k, e) =>
        this.request(() => {
          if (!this.head || e.seq >= this.head.seq) this.head = e;
        }),
      dedupKey: (c) => c.key,
      withSeq: (c, seq) => ({ rec: c, seq }),
      seqOf: (e) => e.seq,
    };
  }
}

async function scenario(seed: number): Promise<void> {
  const random = seededRandom(seed);
  const store = new Store(random);
  // A stream with resends: a record repeats an earlier key with a new id now and then.
  const stream: Rec[] = [];
  for (let i = 0; i < 40; i++) {
    const resend = i > 3 && random() < 0.15;
    stream.push({ key: resend ? stream[Math.floor(random() * i)]!.key : `k${i}`, id: i });
  }
  let done = 0; // the longest prefix some writer finished: where a new owner resumes
  const processes = Array.from({ length: 3 }, () => new SequencedAppender(store.ops()));
  // Records come in batches of 1 to 4, appended without waiting for each
  // other; a failed batch is fetched again, unless the writer dies of it,
  // leaving whatever it wrote half-done.
  const run = async (p: SequencedAppender<Rec, Entry>, from: number, until: number) => {
    for (let i = from; i < until; ) {
      const batch = stream.slice(i, Math.min(until, i + 1 + Math.floor(random() * 4)));
      for (;;) {
        const outcomes = await Promise.allSettled(batch.map((r) => p.append(0n, r)));
        if (outcomes.every((o) => o.status === "fulfilled")) break;
        if (random() < 0.2) return;
      }
      i += batch.length;
      if (i > done) done = i;
    }
  };
  const runs: Promise<void>[] = [];
  // The first owner takes the stream part of the way; others start from the
  // committed prefix while it is still going, and the first comes back later
  // with its old cache (its partition moved away and back).
  runs.push(run(processes[0]!, 0, 25).then(async () => {
    await pauseFor(random, 30);
    await run(processes[0]!, done, stream.length);
  }));
  for (const p of processes.slice(1)) {
    await pauseFor(random, 40);
    runs.push(run(p, done, stream.length));
  }
  await Promise.all(runs);
  // Whoever owns the partition last finishes the stream from the committed prefix.
  store.failRate = 0;
  await run(new SequencedAppender(store.ops()), done, stream.length);

  assert.deepStrictEqual(store.conflicts, [], `seed ${seed}`);
  const firsts: Rec[] = [];
  for (const r of stream) if (!firsts.some((f) => f.key === r.key)) firsts.push(r);
  const log = [...store.rows.values()].sort((a, b) => Number(a.seq - b.seq));
  assert.deepStrictEqual(log.map((e) => [e.seq, e.rec]), firsts.map((r, i) => [BigInt(i + 1), r]), `seed ${seed}`);
  assert.equal(store.head?.seq, BigInt(firsts.length), `seed ${seed}`);
}

async function pauseFor(random: () => number, maxTicks: number): Promise<void> {
  const n = Math.floor(random() * maxTicks);
  for (let i = 0; i < n; i++) await new Promise<void>((r) => setImmediate(r));
}

describe("SequencedAppender", () => {
  it("gives the n-th distinct record of the stream seq n under any interleaving of overlapping writers", async () => {
    for (let seed = 1; seed <= 300; seed++) await scenario(seed);
  });

  it("fails every append queued behind a failed group of its key, so none takes a seq before an earlier record, and counts only the groups stored", async () => {
    // Three attempts of one batch of 200 records, the later two queued while
    // the first is still in flight (a redelivery that did not wait for it):
    // groups of 128 then start mid-copy. The first group fails; had the
    // groups behind it gone on, the record at their start would take seq 1.
    const rows = new Map<bigint, Entry>();
    const dedup = new Map<string, bigint>();
    let head: Entry | undefined;
    let heads = 0;
    let failFirst!: () => void;
    const firstRead = new Promise<void>((r) => (failFirst = r));
    const ops: SequenceOps<Rec, Entry> = {
      readHead: async () => {
        if (++heads === 1) {
          await firstRead;
          throw new Error("timed out");
        }
        return head ? { seq: head.seq, entry: head, legacy: false } : undefined;
      },
      readHeadSeq: async () => head?.seq ?? 0n,
      findSeq: async (_k, c) => {
        const seq = dedup.get(c.key);
        return seq === undefined ? undefined : { seq, sameRecord: true };
      },
      readEntry: async (_k, seq) => rows.get(seq),
      writeEntry: async (_k, e) => {
        rows.set(e.seq, e);
        dedup.set(e.rec.key, e.seq);
      },
      writeHead: async (_k, e) => {
        if (!head || e.seq > head.seq) head = e;
      },
      dedupKey: (c) => c.key,
      withSeq: (rec, seq) => ({ rec, seq }),
      seqOf: (e) => e.seq,
    };
    const appender = new SequencedAppender(ops, 100, 128);
    const stream: Rec[] = Array.from({ length: 200 }, (_, i) => ({ key: `m${i + 1}`, id: i + 1 }));
    const attempt = () => Promise.allSettled(stream.map((r) => appender.append(1n, r)));
    const first = attempt();
    await new Promise((r) => setImmediate(r));
    const queued = [attempt(), attempt()];
    failFirst();
    const outcomes = (await Promise.all([first, ...queued])).flat();
    assert.ok(outcomes.every((o) => o.status === "rejected"), "the failed group and all behind it");
    assert.equal(rows.size, 0);
    assert.equal(appender.stats.groups, 0, "a failed group is not counted as stored (chat_append_groups_total)");
    assert.ok((await attempt()).every((o) => o.status === "fulfilled"));
    assert.equal(appender.stats.groups, 2, "200 appends stored in groups of 128 and 72");
    const log = [...rows.values()].sort((a, b) => Number(a.seq - b.seq));
    assert.deepStrictEqual(log.map((e) => [e.seq, e.rec.id]), stream.map((r, i) => [BigInt(i + 1), r.id]));
  });
});

