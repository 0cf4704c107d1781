import { IN_PARTITIONS, inParts } from "./session.js";

type Waiting<K, V> = { key: K; answers: { resolve(v: V | undefined): void; reject(e: unknown): void }[] };

/**
 * Point reads of one kind asked for in the same turn of the event loop,
 * answered together by `IN` reads of up to IN_PARTITIONS keys. The pipeline's
 * writers ask per key (a group message's inbox writer, per member, its dedup
 * row and head) all in one turn: a hundred requests each, where the
 * coordinator reads the same partitions from one. A read that fails fails
 * every key it named.
 *
 * An `IN` names one column: keys with more than one (an inbox's dedup row is
 * a user's and a message's) are read together only with the others alike,
 * which `groupOf` says.
 */
export class GatheredReads<K, V> {
  private waiting = new Map<string, Waiting<K, V>>();

  constructor(
    /** What the keys' rows say, by `id` of the key; a key with none is absent. Its keys are of one group. */
    private readonly readMany: (keys: K[]) => Promise<Map<string, V>>,
    private readonly id: (key: K) => string,
    /** The keys one read may take together: those of the same group. */
    private readonly groupOf: (key: K) => unknown = () => undefined,
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
    const groups = new Map<unknown, Waiting<K, V>[]>();
    for (const w of this.waiting.values()) {
      const group = groups.get(this.groupOf(w.key));
      if (group) group.push(w);
      else groups.set(this.groupOf(w.key), [w]);
    }
    this.waiting = new Map();
    for (const part of [...groups.values()].flatMap((g) => inParts(g, IN_PARTITIONS))) {
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
