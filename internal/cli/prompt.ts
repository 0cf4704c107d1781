import { createInterface } from "node:readline";
import { CliError } from "./client.js";
import { warn } from "./output.js";
import type { Values } from "./usage.js";

/**
 * Stdin as UTF-8 text, without the byte order mark a file saved on Windows starts with (an invisible
 * U+FEFF at the start of a message; a password with it was refused as wrong, without a hint).
 * Other bytes (a Latin-1 file) are refused: they were sent as U+FFFD in their place, without a word.
 */
export async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(Buffer.concat(chunks));
  } catch {
    throw new CliError("stdin is not UTF-8 text (a file in another encoding? convert it first, as with: iconv -f latin1 -t utf-8)", 2);
  }
}

export async function readPassword(values: Values, confirm: boolean): Promise<string> {
  // At a terminal, read as piped text, what was typed was echoed there (its scrollback, a screen share) until Ctrl+D.
  if (values["password-stdin"] && !process.stdin.isTTY) {
    const password = (await readStdin()).replace(/\r?\n$/, "");
    // `< /dev/null` or an unset variable piped: sent, it was refused as a wrong password (too short, at signup), as if mistyped.
    if (!password) throw new CliError("no password on stdin (it was empty)", 2);
    return password;
  }
  if (values["password-stdin"]) return promptPassword();
  if (process.env.CHAT_PASSWORD) return process.env.CHAT_PASSWORD;
  if (!process.stdin.isTTY) throw new CliError("no password: use --password-stdin, set CHAT_PASSWORD, or run in a terminal", 2);
  const first = await promptPassword();
  if (confirm && (await promptHidden("Password again: ")) !== first) throw new CliError("the passwords differ", 2);
  return first;
}

/** How many times Enter alone at the password prompt is asked again before giving up. */
const EMPTY_PASSWORD_TRIES = 3;

/**
 * A password typed at the terminal, asked again when Enter alone was pressed: sent, the empty one was
 * refused by the server as a wrong password, as if mistyped (a signup's as too short, or asked again to confirm).
 */
async function promptPassword(): Promise<string> {
  for (let i = 1; ; i++) {
    const answer = await promptHidden("Password: ");
    if (answer) return answer;
    if (i >= EMPTY_PASSWORD_TRIES) throw new CliError("no password given (empty three times); nothing was asked of the server", 2);
    warn("the password is empty; type it (Ctrl+C cancels)");
  }
}

/** Asks on the terminal without echoing what is typed. */
function promptHidden(question: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const rl = createInterface({ input: process.stdin, output: process.stderr, terminal: true });
    const mutable = rl as unknown as { _writeToOutput?: (s: string) => void };
    process.stderr.write(question);
    mutable._writeToOutput = () => {};
    let answered = false;
    rl.question("", (answer) => {
      answered = true;
      rl.close();
      process.stderr.write("\n");
      resolve(answer);
    });
    rl.on("SIGINT", () => {
      answered = true;
      rl.close();
      // On a line of its own: "cancelled" alone was written after the prompt, and named nothing.
      process.stderr.write("\n");
      reject(new CliError("cancelled at the password prompt; nothing was asked of the server", 130));
    });
    // Ctrl+D: closed with no answer, the promise was left pending and the process ended with exit 0, without a word.
    rl.on("close", () => {
      if (answered) return;
      process.stderr.write("\n");
      reject(new CliError("no password given (the input ended)", 2));
    });
  });
}
