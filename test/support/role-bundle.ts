// The roles (cmd/<role>/main.ts) as the suites that start them hundreds of times spawn them:
// built once per test process, each into one file.
import { execFileSync } from "node:child_process";
import { readdirSync, rmSync } from "node:fs";
import { join, resolve } from "node:path";
import { isAlive } from "../../internal/storage/sqlite/process-alive.js";

const ROOT = resolve(import.meta.dirname, "../..");
const DIR = join(ROOT, "node_modules", ".cache", "chat-role-tests");

/**
 * esbuild's build with a plugin, which its synchronous API does not take, run to its end in a
 * child: the suites hand the child process to their own code as they spawn it (runToExit's
 * `started`), so a start cannot wait for a build. The plugin keeps each module's
 * `import.meta.dirname` and `import.meta.url` those of its source file: the descriptor set,
 * web/dist and the packages the code requires by path are found from there, as under tsx.
 */
const BUILD = `
import { readFileSync } from "node:fs";
import { dirname } from "node:path";
import { pathToFileURL } from "node:url";
import { build } from "esbuild";
const [outdir, entries] = [process.argv[1], JSON.parse(process.argv[2])];
await build({
  entryPoints: entries, outdir, outExtension: { ".js": ".mjs" },
  bundle: true, platform: "node", format: "esm", target: "node20", packages: "external", logLevel: "warning",
  plugins: [{ name: "source-paths", setup(b) {
    b.onLoad({ filter: /\\.ts$/ }, (args) => ({
      contents: readFileSync(args.path, "utf8")
        .replaceAll("import.meta.dirname", JSON.stringify(dirname(args.path)))
        .replaceAll("import.meta.url", JSON.stringify(pathToFileURL(args.path).href)),
      loader: "ts",
    }));
  } }],
});
`;

let built: Map<string, string> | undefined;

/**
 * The command that runs `cmd/<role>/main.ts`. Under `--import tsx` each start resolves and
 * loads every module of the role through tsx's hooks: about 1.4 s of CPU to "listening" for
 * chatd here, against 0.6 s for the same sources bundled by the esbuild tsx transforms them
 * with, and a cluster test starts six or more roles. Packages stay imports of their own, so the
 * bundles live under node_modules to find them: every role's at the first start of a test
 * process (about a second), removed at its exit. `npm start` and the README's commands (tsx)
 * are what test/scripts and test/cmd/role-tsx.test.ts run; CHAT_TEST_TSX=1 runs every role
 * under tsx (stack traces that name the .ts files).
 */
export function roleCommand(role: string): string[] {
  if (process.env.CHAT_TEST_TSX === "1") return [process.execPath, "--import", "tsx", join(ROOT, `cmd/${role}/main.ts`)];
  built ??= buildRoles();
  const bundle = built.get(role);
  if (bundle === undefined) throw new Error(`no role ${role} under cmd/`);
  return [process.execPath, bundle];
}

function buildRoles(): Map<string, string> {
  removeOrphans();
  const roles = readdirSync(join(ROOT, "cmd"), { withFileTypes: true })
    .filter((d) => d.isDirectory())
    .map((d) => d.name);
  const entries = Object.fromEntries(roles.map((role) => [`${role}-${process.pid}`, join(ROOT, `cmd/${role}/main.ts`)]));
  execFileSync(process.execPath, ["--input-type=module", "-e", BUILD, DIR, JSON.stringify(entries)], { cwd: ROOT, stdio: ["ignore", "ignore", "inherit"] });
  const bundles = new Map(roles.map((role) => [role, join(DIR, `${role}-${process.pid}.mjs`)]));
  process.once("exit", () => {
    for (const bundle of bundles.values()) rmSync(bundle, { force: true });
  });
  return bundles;
}

/** Bundles of test processes that died without their exit handler (a kill): nobody removes them else. */
function removeOrphans(): void {
  let files: string[];
  try {
    files = readdirSync(DIR);
  } catch {
    return; // no folder yet
  }
  for (const file of files) {
    const pid = Number(/-(\d+)\.mjs$/.exec(file)?.[1]);
    if (pid > 0 && !isAlive(pid)) rmSync(join(DIR, file), { force: true });
  }
}
