// chat-cli as the suites that run it hundreds of times spawn it: built once into one file.
import { mkdirSync, rmSync } from "node:fs";
import { join, resolve } from "node:path";
import { buildSync } from "esbuild";

const ROOT = resolve(import.meta.dirname, "../..");

let bundle: string | undefined;

/**
 * `node <args>` that runs cmd/chat-cli/main.ts. Under `--import tsx` each start resolves and
 * loads every module of the CLI through tsx's hooks: about 0.7 s of CPU, against 0.1 s for the
 * same sources bundled by the esbuild tsx transforms them with. Packages stay imports of their
 * own, so the bundle lives under node_modules to find them; one per test process, removed at
 * its exit. `npm run chat` itself (tsx) is what the README test and the smaller cli-* suites run.
 */
export function cliArgs(...args: string[]): string[] {
  if (bundle === undefined) {
    const dir = join(ROOT, "node_modules", ".cache", "chat-cli-tests");
    mkdirSync(dir, { recursive: true });
    const out = join(dir, `main-${process.pid}.mjs`);
    buildSync({
      entryPoints: [join(ROOT, "cmd/chat-cli/main.ts")],
      outfile: out,
      bundle: true,
      platform: "node",
      format: "esm",
      target: "node20",
      packages: "external",
      logLevel: "warning",
    });
    process.once("exit", () => rmSync(out, { force: true }));
    bundle = out;
  }
  return [bundle, ...args];
}
