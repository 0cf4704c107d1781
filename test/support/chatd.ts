import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";

const ROOT = resolve(import.meta.dirname, "../..");

export interface ChatdProcess {
  httpUrl: string;
  grpcUrl: string;
  wsUrl: string;
  dataDir: string;
  child: ChildProcess;
  /** SIGTERM and wait for exit. */
  stop(): Promise<void>;
  /** SIGKILL: no chance to flush anything. */
  kill(): Promise<void>;
}

/**
 * Starts `cmd/chatd` as its own process on free ports and resolves once it
 * says where it listens. The data directory is kept across restarts of the
 * same test (pass it back in) and removed by `removeDataDir`.
 */
export async function startChatd(options: { dataDir?: string; env?: Record<string, string> } = {}): Promise<ChatdProcess> {
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), "chatd-test-"));
  const child = spawn(process.execPath, ["--import", "tsx", join(ROOT, "cmd/chatd/main.ts")], {
    cwd: ROOT,
    env: {
      ...process.env,
      CHAT_DATA_DIR: dataDir,
      CHAT_HTTP_PORT: "0",
      CHAT_GRPC_PORT: "0",
      CHAT_LOG_LEVEL: "info",
      ...options.env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const stderr: string[] = [];
  child.stderr!.on("data", (d) => stderr.push(String(d)));
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  const lines = createInterface({ input: child.stdout! });
  const listening = await new Promise<{ http: string; grpc: string; ws: string }>((resolvePromise, reject) => {
    const timer = setTimeout(() => reject(new Error(`chatd did not start in time: ${stderr.join("")}`)), 60_000);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`chatd exited with ${code} before listening: ${stderr.join("")}`));
    });
    lines.on("line", (line) => {
      try {
        const rec = JSON.parse(line);
        if (rec.msg === "chatd listening") {
          clearTimeout(timer);
          resolvePromise(rec);
        }
      } catch {
        // not a log line
      }
    });
  });
  return {
    httpUrl: listening.http,
    grpcUrl: listening.grpc,
    wsUrl: listening.ws,
    dataDir,
    child,
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

export function removeDataDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}
