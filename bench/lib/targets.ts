import { createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, readdirSync, existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { AuthService } from "../../gen/es/chat/v1/auth_pb.js";
import { ChannelService } from "../../gen/es/chat/v1/channels_pb.js";
import { TokenSigner, loadOrCreateKeys } from "../../internal/auth/tokens.js";
import { engineScope } from "../../test/support/engine-scope.js";
import { engineConfig } from "../../test/support/engines.js";

export const ROOT = resolve(import.meta.dirname, "../..");

/** A server process the benchmark watches (memory per session is read from these). */
export interface ServerProcess {
  role: string;
  pid: number;
  /** Where its Prometheus /metrics is served (heap size). */
  metricsUrl?: string;
  child?: ChildProcess;
}

/** An account the benchmark drives: one device, one token. */
export interface BenchUser {
  userId: string;
  token: string;
}

export interface Target {
  name: string;
  /** True when the server keeps messages for offline devices (the relay does not). */
  persistent: boolean;
  wsUrls: string[];
  processes: ServerProcess[];
  settings: Record<string, unknown>;
  /** Real accounts through the public API (sign-up, argon2id), `concurrency` at a time. */
  signUpUsers(n: number, concurrency: number, onProgress?: (done: number) => void): Promise<BenchUser[]>;
  /**
   * Sessions for the idle test without the sign-up cost: access tokens signed
   * with the server's own key (which this run owns) for user ids that have
   * no account row. The handshake is verified exactly as for a real device;
   * what is skipped is only the argon2 hash of the sign-up.
   */
  mintUsers(n: number): Promise<BenchUser[]>;
  openDirect(a: BenchUser, b: BenchUser): Promise<string>;
  createGroup(owner: BenchUser, others: BenchUser[]): Promise<string>;
  stop(): Promise<void>;
}

// ---------------------------------------------------------------- processes

export interface Spawned {
  child: ChildProcess;
  info: Record<string, unknown>;
  output: string[];
  stop(): Promise<void>;
}

/** Starts `node --import tsx <script>` and resolves at its "<listening>" JSON log line. */
export async function spawnListening(script: string, listening: string, env: Record<string, string>, nodeOptions: string[] = [], root = ROOT): Promise<Spawned> {
  const child = spawn(process.execPath, [...nodeOptions, "--import", "tsx", join(root, script)], {
    cwd: root,
    env: { ...process.env, CHAT_LOG_LEVEL: "info", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const output: string[] = [];
  child.stderr!.on("data", (d) => {
    output.push(String(d));
    if (output.length > 200) output.shift();
  });
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  const lines = createInterface({ input: child.stdout! });
  const info = await new Promise<Record<string, unknown>>((resolvePromise, reject) => {
    const timer = setTimeout(() => reject(new Error(`${script} did not start in time:\n${output.join("")}`)), 120_000);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${script} exited with ${code} before listening:\n${output.join("")}`));
    });
    lines.on("line", (line) => {
      try {
        const rec = JSON.parse(line) as Record<string, unknown>;
        if (rec.msg === listening) {
          clearTimeout(timer);
          resolvePromise(rec);
        }
        if (typeof rec.level === "number" && rec.level >= 50) output.push(line);
      } catch {
        // not a log line
      }
    });
  });
  return {
    child,
    info,
    output,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

// ---------------------------------------------------------------- accounts over the public API

function clients(baseUrl: string, token?: string) {
  const auth: Interceptor = (next) => (req) => {
    if (token) req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };
  const transport = createConnectTransport({ baseUrl, httpVersion: "1.1", interceptors: [auth] });
  return { auth: createClient(AuthService, transport), channels: createClient(ChannelService, transport) };
}

async function signUpMany(apiUrl: string, n: number, concurrency: number, onProgress?: (done: number) => void): Promise<BenchUser[]> {
  const run = Date.now().toString(36).slice(-5) + Math.random().toString(36).slice(2, 5);
  const api = clients(apiUrl);
  const users: BenchUser[] = new Array(n);
  let next = 0;
  let done = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, n) }, async () => {
      while (next < n) {
        const i = next++;
        const username = `b${run}_${i.toString(36)}`;
        for (let attempt = 0; ; attempt++) {
          try {
            const res = await api.auth.signUp({ username, password: "bench password 1", displayName: username, device: { name: "bench" } });
            const c = res.credentials!;
            users[i] = { userId: c.userId.toString(), token: c.accessToken };
            break;
          } catch (err) {
            if (attempt >= 3) throw err;
            await new Promise((r) => setTimeout(r, 500));
          }
        }
        if (++done % 500 === 0) onProgress?.(done);
      }
    }),
  );
  return users;
}

async function mintWithKeys(keysDir: string, n: number): Promise<BenchUser[]> {
  const keys = await loadOrCreateKeys(keysDir);
  const signer = new TokenSigner(keys, { ttlMs: 24 * 3600_000 });
  // Far above any snowflake id this run hands out, so they never meet a real account.
  const base = 9_000_000_000_000_000_000n + BigInt(Date.now() % 1_000_000) * 1_000_000n;
  const out: BenchUser[] = [];
  for (let i = 0; i < n; i++) {
    const userId = base + BigInt(i);
    out.push({ userId: userId.toString(), token: signer.sign({ userId, deviceId: 1n }).token });
  }
  return out;
}

function apiTargetMethods(apiUrl: string, keysDir: string) {
  return {
    signUpUsers: (n: number, concurrency: number, onProgress?: (done: number) => void) => signUpMany(apiUrl, n, concurrency, onProgress),
    mintUsers: (n: number) => mintWithKeys(keysDir, n),
    async openDirect(a: BenchUser, b: BenchUser): Promise<string> {
      const res = await clients(apiUrl, a.token).channels.openDirect({ userId: BigInt(b.userId) });
      return res.channel!.channelId.toString();
    },
    async createGroup(owner: BenchUser, others: BenchUser[]): Promise<string> {
      const res = await clients(apiUrl, owner.token).channels.createGroup({ title: "bench", memberUserIds: others.map((u) => BigInt(u.userId)) });
      return res.channel!.channelId.toString();
    },
  };
}

// ---------------------------------------------------------------- chatd (embedded defaults)

export interface StartOptions {
  dataDir: string;
  /** Another checkout to run the server from (a before/after comparison in one run). */
  root?: string;
  /** Name in the results (default: the kind of target). */
  name?: string;
  /** Extra node flags for the server process(es), e.g. --cpu-prof. */
  nodeOptions?: string[];
  env?: Record<string, string>;
}

/** Settings that lift what would otherwise measure the rate limiter instead of the server. */
export const BENCH_SERVER_ENV = {
  CHAT_RATE_FRAMES_PER_SEC: "1000",
  CHAT_RATE_FRAME_BURST: "2000",
  CHAT_ACCESS_TOKEN_TTL_S: "86400",
  // One load generator signs up and serves every user: the api's per-address
  // and per-account rates would measure the limits, not the server.
  CHAT_API_AUTH_PER_SEC: "0",
  CHAT_API_CALLS_PER_SEC: "0",
  // Sends per account: a scenario's senders may send faster than any person.
  CHAT_SENDS_PER_SEC: "0",
};

export async function startChatdTarget(o: StartOptions): Promise<Target> {
  mkdirSync(o.dataDir, { recursive: true });
  const env = { ...BENCH_SERVER_ENV, CHAT_DATA_DIR: o.dataDir, CHAT_HTTP_PORT: "0", CHAT_GRPC_PORT: "0", ...o.env };
  const p = await spawnListening("cmd/chatd/main.ts", "chatd listening", env, o.nodeOptions, o.root);
  const http = String(p.info.http);
  return {
    name: o.name ?? "chatd",
    persistent: true,
    wsUrls: [String(p.info.ws)],
    processes: [{ role: "chatd", pid: p.child.pid!, metricsUrl: `${http}/metrics`, child: p.child }],
    settings: { env, nodeOptions: o.nodeOptions ?? [], root: o.root ?? ROOT },
    ...apiTargetMethods(http, join(o.dataDir, "keys")),
    stop: () => p.stop(),
  };
}

// ---------------------------------------------------------------- a deployment started by someone else

export function startExternalTarget(o: { apiUrl: string; wsUrls: string[]; keysDir: string; processes: ServerProcess[] }): Target {
  return {
    name: "external",
    persistent: true,
    wsUrls: o.wsUrls,
    processes: o.processes,
    settings: { apiUrl: o.apiUrl, wsUrls: o.wsUrls },
    ...apiTargetMethods(o.apiUrl, o.keysDir),
    stop: async () => {},
  };
}

// ---------------------------------------------------------------- the ws relay (ceiling)

export async function startRelayTarget(o: StartOptions): Promise<Target> {
  const p = await spawnListening("bench/relay.ts", "relay listening", { ...o.env }, o.nodeOptions);
  const http = String(p.info.http);
  let nextUser = 1n;
  const fake = (n: number): BenchUser[] =>
    Array.from({ length: n }, () => {
      const userId = nextUser++;
      const body = Buffer.from(JSON.stringify({ sub: userId.toString(), dev: "1" })).toString("base64url");
      return { userId: userId.toString(), token: `${body}.unsigned` };
    });
  let nextChannel = 1n;
  const declare = async (members: BenchUser[]) => {
    const id = (nextChannel++).toString();
    const res = await fetch(`${http}/channels`, { method: "POST", body: JSON.stringify({ channels: [{ id, members: members.map((m) => m.userId) }] }) });
    if (!res.ok) throw new Error(`relay /channels: ${res.status}`);
    return id;
  };
  return {
    name: "relay",
    persistent: false,
    wsUrls: [String(p.info.ws)],
    processes: [{ role: "relay", pid: p.child.pid!, metricsUrl: `${http}/metrics`, child: p.child }],
    settings: { nodeOptions: o.nodeOptions ?? [] },
    signUpUsers: async (n) => fake(n),
    mintUsers: async (n) => fake(n),
    openDirect: (a, b) => declare([a, b]),
    createGroup: (owner, others) => declare([owner, ...others]),
    stop: () => p.stop(),
  };
}

// ---------------------------------------------------------------- the distributed mode on the real engines

export interface ClusterShape {
  gateways: number;
  chatServers: number;
  pipelines: number;
}

/** api, chat servers, pipeline workers and gateways as separate processes, on etcd, Redis, Kafka and Cassandra. */
export async function startClusterTarget(o: StartOptions & { shape: ClusterShape; partitions: number }): Promise<Target> {
  const run = Math.random().toString(36).slice(2, 8);
  // Its own keyspace, etcd prefix, topics and consumer groups, so clusters of
  // one run do not take each other's messages (a checkout from before Kafka
  // namespaces ignores CHAT_KAFKA_NAMESPACE), dropped when it stops.
  const scope = engineScope(engineConfig(), "bench", run);
  const keysDir = join(o.dataDir, "keys");
  mkdirSync(keysDir, { recursive: true });
  const common: Record<string, string> = {
    ...BENCH_SERVER_ENV,
    ...scope.env,
    CHAT_KAFKA_PARTITIONS: String(o.partitions),
    CHAT_KEYS_DIR: keysDir,
    CHAT_HTTP_PORT: "0",
    CHAT_GRPC_PORT: "0",
    CHAT_OPS_PORT: "0",
    ...o.env,
  };
  const started: (Spawned & { role: string })[] = [];
  const procs: ServerProcess[] = [];
  const start = async (role: string, env: Record<string, string> = {}) => {
    const p = await spawnListening(`cmd/${role}/main.ts`, `${role} listening`, { ...common, ...env }, o.nodeOptions, o.root);
    started.push(Object.assign(p, { role }));
    const ops = p.info.ops !== undefined ? `http://127.0.0.1:${p.info.ops}/metrics` : p.info.http ? `${p.info.http}/metrics` : undefined;
    procs.push({ role, pid: p.child.pid!, metricsUrl: ops, child: p.child });
    return p;
  };
  try {
    const api = await start("api");
    const servers = await Promise.all(Array.from({ length: o.shape.chatServers }, (_, i) => start("chat-server", { CHAT_SERVER_ID: `bcs${i}-${run}` })));
    await Promise.all(Array.from({ length: o.shape.pipelines }, () => start("pipeline")));
    const gateways = await Promise.all(Array.from({ length: o.shape.gateways }, (_, i) => start("gateway", { CHAT_GATEWAY_ID: `bgw${i}-${run}` })));
    void servers;
    // The engines too, for their CPU per message (scripts/engines.sh status: ENGINE PID PORT STATE ...).
    for (const e of engineProcesses()) procs.push(e);
    const apiUrl = String(api.info.http);
    return {
      name: o.name ?? "cluster",
      persistent: true,
      wsUrls: gateways.map((g) => String(g.info.ws)),
      processes: procs,
      settings: { env: { ...common }, shape: o.shape, nodeOptions: o.nodeOptions ?? [] },
      ...apiTargetMethods(apiUrl, keysDir),
      async stop() {
        // Gateways first (devices go), then the rest.
        for (const role of ["gateway", "pipeline", "chat-server", "api"]) {
          await Promise.all(started.filter((p) => p.role === role).map((p) => p.stop()));
        }
        await scope.drop();
      },
    };
  } catch (err) {
    await Promise.all(started.map((p) => p.stop()));
    await scope.drop().catch(() => {});
    throw err;
  }
}

/** The local engines' processes (from `scripts/engines.sh status`), watched for CPU and memory as "engine:<name>". */
export function engineProcesses(): ServerProcess[] {
  try {
    const out = execFileSync("bash", [join(ROOT, "scripts/engines.sh"), "status"], { cwd: ROOT, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
    return out
      .split("\n")
      .slice(1)
      .map((l) => l.trim().split(/\s+/))
      .filter((f) => f.length >= 4 && /^\d+$/.test(f[1]!) && f[3] === "up")
      .map((f) => ({ role: `engine:${f[0]}`, pid: Number(f[1]) }));
  } catch {
    return [];
  }
}

/** Lists *.cpuprofile files in a directory (written by --cpu-prof when a process exits). */
export function cpuProfiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).filter((f) => f.endsWith(".cpuprofile")).map((f) => join(dir, f));
}
