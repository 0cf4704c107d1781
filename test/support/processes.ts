import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { randomBytes } from "node:crypto";
import { mkdirSync, rmSync } from "node:fs";
import { createServer, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { engineScope, type EngineScope } from "./engine-scope.js";
import { engineConfig } from "./engines.js";
import { roleCommand } from "./role-bundle.js";
import { waitFor } from "./wait.js";

const ROOT = resolve(import.meta.dirname, "../..");

export interface RoleProcess {
  role: string;
  /** The fields of the role's "<role> listening" log line (its URLs and ports). */
  info: Record<string, unknown>;
  child: ChildProcess;
  /** Log lines so far (JSON strings), for diagnosing a failure. */
  output: string[];
  stop(): Promise<void>;
  kill(): Promise<void>;
}

/**
 * Starts `cmd/<role>/main.ts` (bundled: see role-bundle.ts) as its own process and resolves when it logs
 * "<role> listening". Every process a test starts is stopped by `stopAll`.
 * `command` starts it some other way (`["npm", "start"]`); `detached` makes
 * the process the leader of its own process group; `onLine` sees each line
 * of its stdout as it comes, from before it listens.
 */
export async function startRole(
  role: string,
  env: Record<string, string>,
  timeoutMs = 90_000,
  options: { command?: readonly string[]; detached?: boolean; onLine?: (line: string) => void } = {},
): Promise<RoleProcess> {
  const [file, ...args] = options.command ?? roleCommand(role);
  const child = spawn(file!, args, {
    cwd: ROOT,
    detached: options.detached ?? false,
    // One test client signs up many users from one address: no per-address
    // sign-in rate, unless a test sets one to pin it.
    env: { ...process.env, CHAT_LOG_LEVEL: "info", CHAT_API_AUTH_PER_SEC: "0", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  running.add(child);
  const output: string[] = [];
  child.stderr!.on("data", (d) => output.push(String(d)));
  const exited = new Promise<void>((r) =>
    child.once("exit", () => {
      running.delete(child);
      r();
    }),
  );
  const lines = createInterface({ input: child.stdout! });
  const info = await new Promise<Record<string, unknown>>((resolvePromise, reject) => {
    const timer = setTimeout(() => reject(new Error(`${role} did not start in time:\n${output.slice(-20).join("\n")}`)), timeoutMs);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${role} exited with ${code} before listening:\n${output.slice(-20).join("\n")}`));
    });
    lines.on("line", (line) => {
      options.onLine?.(line);
      output.push(line);
      if (output.length > 500) output.shift();
      try {
        const rec = JSON.parse(line);
        if (rec.msg === `${role} listening`) {
          clearTimeout(timer);
          resolvePromise(rec);
        }
      } catch {
        // not a log line
      }
    });
  });
  return {
    role,
    info,
    child,
    output,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      await exited;
    },
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await exited;
    },
  };
}

const running = new Set<ChildProcess>();

/** Kills whatever a test left running (after a failure), so nothing outlives the suite. */
/**
 * An api, a chat server (and `more` roles, such as the pipeline) and a
 * gateway of one deployment, resolved once the gateway sees the chat server:
 * its /healthz answers 200.
 */
export async function startEdge(env: Record<string, string>, more: readonly string[] = []): Promise<{ api: RoleProcess; chatServer: RoleProcess; gateway: RoleProcess }> {
  const api = await startRole("api", env);
  const chatServer = await startRole("chat-server", env);
  for (const role of more) await startRole(role, env);
  const gateway = await startRole("gateway", env);
  await waitFor(async () => (await fetch(`${String(gateway.info.http)}/healthz`)).ok, "the gateway to see the chat server", 60_000);
  return { api, chatServer, gateway };
}

export async function stopAll(): Promise<void> {
  await Promise.all(
    [...running].map(
      (child) =>
        new Promise<void>((r) => {
          child.once("exit", () => r());
          child.kill("SIGKILL");
        }),
    ),
  );
}

/**
 * A deployment of its own for the suite it is called in (mocha hooks), whose tests start roles:
 * a corner of the engines (`label`, see engineScope) and a folder, `dir`, with the keys the api
 * writes and the gateway reads in `keysDir`. After the suite, the role processes still running
 * are stopped (stopAll), the folder removed and the corner dropped. `env` starts a cluster role
 * in it, its listeners on ports the system picks; `run` is the corner's random part, for the ids of
 * roles that must not collide with another run's (CHAT_SERVER_ID, CHAT_GATEWAY_ID).
 */
export function useDeployment(label: string): { scope: EngineScope; run: string; dir: string; keysDir: string; env: Record<string, string> } {
  const run = Math.random().toString(36).slice(2, 8);
  const scope = engineScope(engineConfig(), label, run);
  // Named now, made in the suite's `before`: a run whose --grep skips the suite runs none of its
  // hooks, and a folder made as the file loads would be left behind.
  const dir = join(tmpdir(), `chat-${label}-${randomBytes(6).toString("hex")}`);
  const keysDir = join(dir, "keys");
  before(() => mkdirSync(keysDir, { recursive: true }));
  after(async function () {
    // The keyspace drop may wait up to 100 s on a loaded node (see engineScope).
    this.timeout(150_000);
    await stopAll();
    rmSync(dir, { recursive: true, force: true });
    await scope.drop();
  });
  return { scope, run, dir, keysDir, env: { ...scope.env, CHAT_KEYS_DIR: keysDir, CHAT_HTTP_PORT: "0", CHAT_GRPC_PORT: "0" } };
}

/**
 * Runs `cmd/<role>/main.ts` with `env` to its exit (a role meant to fail at start, or one `started`
 * signals): its exit status, stderr and stdout (its log).
 */
export async function runToExit(
  role: string,
  env: Record<string, string>,
  started?: (child: ChildProcess) => void,
): Promise<{ code: number | null; stderr: string; stdout: string }> {
  const [file, ...args] = roleCommand(role);
  const child = spawn(file!, args, {
    cwd: ROOT,
    env: { ...process.env, GRPC_VERBOSITY: "NONE", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  started?.(child);
  let [stderr, stdout] = ["", ""];
  child.stderr!.on("data", (d) => (stderr += String(d)));
  child.stdout!.on("data", (d) => (stdout += String(d)));
  try {
    const [code] = (await once(child, "close")) as [number | null];
    return { code, stderr, stdout };
  } finally {
    if (child.exitCode === null) child.kill("SIGKILL");
  }
}

/**
 * Runs `cmd/<role>/main.ts` to its exit with a port something else holds,
 * which `env(port)` hands it: the port, its exit status and its stderr.
 */
export async function exitOnTakenPort(role: string, env: (port: number) => Record<string, string>): Promise<{ port: number; code: number | null; stderr: string }> {
  const taken = createServer();
  await new Promise<void>((r) => taken.listen(0, "127.0.0.1", r));
  const port = (taken.address() as AddressInfo).port;
  try {
    return { port, ...(await runToExit(role, env(port))) };
  } finally {
    taken.close();
  }
}
