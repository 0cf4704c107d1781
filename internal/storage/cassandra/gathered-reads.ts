import { IN_PARTITIONS, inParts } from "./session.js";

/**
 * Point reads of one kind asked for in the same turn of the event loop,
 * answered together by `IN` reads of up to IN_PARTITIONS keys. The pipeline's
 * writers ask per key (a group message's inbox writer, per member, its dedup
 * row and head) all in one turn: a hundred requests each, where the
 * coordinator reads the same partitions from one. A read that fails fails
 * every key it named.
 */
export class GatheredReads<K, V> {
  private waiting = new Map<string, { key: K; answers: { resolve(v: V | undefined): void; reject(e: unknown): void }[] }>();

  constructor(
    /** What the keys' rows say, by `id` of the key; a key with none is absent. */
    private readonly readMany: (keys: K[]) => Promise<Map<string, V>>,
    private readonly id: (key: K) => string,
  ) {}

  read(key: K): Promise<V | undefined> {
    return new Promise((resolve, reject) => {
      if (this.waiting.size === 0) process.nextTick(() => this.flush());
      const id = this.id(key);
      const w = this.waiting.get(id);
      if (w) w.answers.push({ resolve, reject });
      else this.waiting.set(id, { key, answers: [{ resolve, reject }] });
    });
  }

  private flush(): void {
    const batch = [...this.waiting.values()];
    this.waiting = new Map();
    for (const part of inParts(batch, IN_PARTITIONS)) {
      this.readMany(part.map((w) => w.key)).then(
        (found) => {
          for (const w of part) for (const a of w.answers) a.resolve(found.get(this.id(w.key)));
        },
        (err: unknown) => {
          for (const w of part) for (const a of w.answers) a.reject(err);
        },
      );
    }
  }
}
