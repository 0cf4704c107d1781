// The backup tool as an operator runs it, and what a restored chatd serves.
import { execFile } from "node:child_process";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { PageDirection } from "../../gen/es/chat/v1/messages_pb.js";
import type { Message } from "../../gen/es/chat/v1/types_pb.js";
import { apiClients } from "./api.js";

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, "../..");

/** `npm run backup -- ...args` with CHAT_DATA_DIR pointing at `dataDir`: its exit code and output. */
export async function runBackup(dataDir: string, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, ["--import", "tsx", join(ROOT, "cmd/chatd-backup/main.ts"), ...args], {
      cwd: ROOT,
      env: { ...process.env, CHAT_DATA_DIR: dataDir },
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: e.code ?? -1, stdout: e.stdout ?? "", stderr: e.stderr ?? "" };
  }
}

/** A channel's whole history, oldest first, as `token`'s user reads it from the api at `httpUrl`. */
export async function wholeHistory(httpUrl: string, token: string, channelId: bigint): Promise<Message[]> {
  const messages = apiClients(httpUrl, token).messages;
  const all: Message[] = [];
  for (;;) {
    const page = await messages.listMessages({ channelId, anchorSeq: BigInt(all.length), direction: PageDirection.FORWARD, limit: 200 });
    if (page.messages.length === 0) return all;
    all.push(...page.messages);
  }
}
