import type { ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestDevice } from "./device.js";
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
  const p = await startRole("chatd", { CHAT_DATA_DIR: dataDir, CHAT_HTTP_PORT: "0", CHAT_GRPC_PORT: "0", ...options.env }, 60_000).catch((err: unknown) => {
    // A start meant to fail never hands its folder back to be removed.
    if (options.dataDir === undefined) removeDataDir(dataDir);
    throw err;
  });
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

/**
 * One chatd for a whole suite: started before its first test; after its last, the devices the
 * tests pushed on `devices` are closed, chatd is stopped and its data directory removed.
 */
export function useChatd(options: Parameters<typeof startChatd>[0] = {}): { readonly chatd: ChatdProcess; readonly devices: TestDevice[] } {
  let chatd: ChatdProcess | undefined;
  const devices: TestDevice[] = [];
  before(async () => {
    chatd = await startChatd(options);
  });
  after(async () => {
    await Promise.all(devices.splice(0).map((d) => d.close()));
    await chatd?.stop();
    if (chatd) removeDataDir(chatd.dataDir);
  });
  return {
    get chatd() {
      if (!chatd) throw new Error("chatd is started by the suite's before hook: read it inside a test");
      return chatd;
    },
    devices,
  };
}
