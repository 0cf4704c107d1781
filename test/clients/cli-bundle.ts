import { roleCommand } from "../support/role-bundle.js";

/**
 * `node <args>` that runs cmd/chat-cli/main.ts, bundled as the roles are (support/role-bundle.ts):
 * the suites that spawn it hundreds of times. `npm run chat` itself (tsx) is what the README
 * test and the smaller cli-* suites run.
 */
export function cliArgs(...args: string[]): string[] {
  return [...roleCommand("chat-cli").slice(1), ...args];
}
