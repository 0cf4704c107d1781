import { fork, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import type { WorkerCommand, WorkerReply } from "./ipc.js";
import type { SessionSpec } from "./session.js";
import { ROOT } from "./targets.js";

type Cmd = WorkerCommand extends infer C ? (C extends { id: number } ? Omit<C, "id"> : never) : never;

/** One load-generator process (bench/loadgen.ts) and its request/reply channel. */
export class LoadWorker {
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (r: WorkerReply) => void; reject: (e: Error) => void }>();
  private readonly child: ChildProcess;
  readonly exited: Promise<void>;

  constructor(readonly workerId: number) {
    this.child = fork(join(ROOT, "bench/loadgen.ts"), [], {
      cwd: ROOT,
      execArgv: ["--import", "tsx"],
      serialization: "advanced",
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    });
    this.child.on("message", (raw) => {
      const msg = raw as WorkerReply;
      const w = this.waiting.get(msg.id);
      if (!w) return;
      this.waiting.delete(msg.id);
      if (msg.type === "error") w.reject(new Error(msg.message));
      else w.resolve(msg);
    });
    this.exited = new Promise((r) =>
      this.child.once("exit", (code) => {
        for (const w of this.waiting.values()) w.reject(new Error(`load generator ${workerId} exited (${code})`));
        this.waiting.clear();
        r();
      }),
    );
  }

  get pid(): number {
    return this.child.pid!;
  }

  request<T extends WorkerReply["type"]>(cmd: Cmd): Promise<Extract<WorkerReply, { type: T }>> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve: resolve as (r: WorkerReply) => void, reject });
      this.child.send({ ...cmd, id } as WorkerCommand);
    });
  }

  async close(): Promise<void> {
    if (this.child.exitCode !== null) return;
    await this.request<"ok">({ type: "close" }).catch(() => {});
    const timer = setTimeout(() => this.child.kill("SIGKILL"), 5000);
    await this.exited;
    clearTimeout(timer);
  }
}

export interface WorkerSetOptions {
  workers: number;
  wsUrls: string[];
  localAddresses: string[];
  ackDelayMs: number;
  connectTimeoutMs: number;
}

/** Sessions spread over load generators: session g lives on worker g % workers. */
export class WorkerSet {
  readonly workers: LoadWorker[] = [];
  readonly owner = new Map<number, LoadWorker>();

  private constructor() {}

  static async start(sessions: SessionSpec[], o: WorkerSetOptions): Promise<WorkerSet> {
    const set = new WorkerSet();
    const n = Math.max(1, Math.min(o.workers, sessions.length));
    for (let i = 0; i < n; i++) set.workers.push(new LoadWorker(i));
    const mine = set.workers.map(() => [] as SessionSpec[]);
    for (const s of sessions) {
      mine[s.g % n]!.push(s);
      set.owner.set(s.g, set.workers[s.g % n]!);
    }
    await Promise.all(
      set.workers.map((w, i) =>
        w.request<"ok">({
          type: "init",
          workerId: i,
          wsUrls: o.wsUrls,
          localAddresses: o.localAddresses,
          sessions: mine[i]!,
          ackDelayMs: o.ackDelayMs,
          connectTimeoutMs: o.connectTimeoutMs,
        }),
      ),
    );
    return set;
  }

  all<T extends WorkerReply["type"]>(cmd: Cmd): Promise<Extract<WorkerReply, { type: T }>[]> {
    return Promise.all(this.workers.map((w) => w.request<T>(cmd)));
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.close()));
  }
}
