import type { ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startRole } from "./processes.js";

export interface ChatdProcess {
  httpUrl: string;
  grpcUrl: string;
  wsUrl: string;
  /** /metrics' own port, when CHAT_OPS_PORT was given. */
  opsPort?: number;
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
  const p = await startRole("chatd", { CHAT_DATA_DIR: dataDir, CHAT_HTTP_PORT: "0", CHAT_GRPC_PORT: "0", ...options.env }, 60_000);
  return {
    httpUrl: String(p.info.http),
    grpcUrl: String(p.info.grpc),
    wsUrl: String(p.info.ws),
    ...(p.info.ops === undefined ? {} : { opsPort: Number(p.info.ops) }),
    dataDir,
    child: p.child,
    stop: () => p.stop(),
    kill: () => p.kill(),
  };
}

export function removeDataDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}
