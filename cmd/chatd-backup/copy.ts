import { backupDataDir } from "../../internal/storage/sqlite/backup.js";

// The copying half of `npm run backup`, run by main.ts as a child process of
// its own: `copy.ts <data directory> <new directory>`. A copy is native work
// that no signal handler can interrupt, so main.ts kills this process outright
// on Ctrl-C and removes what it left.
const [source, target] = process.argv.slice(2);
try {
  const report = backupDataDir(source!, target!);
  const databases = report.databases.map((d) => `${d.name} (${(d.bytes / 1_048_576).toFixed(1)} MiB)`).join(", ");
  process.stdout.write(`backed up ${source} to ${report.target} in ${(report.ms / 1000).toFixed(1)} s: ${databases}; ${report.files.join(", ") || "no other files"}\n`);
} catch (err) {
  process.stderr.write(`backup: ${(err as Error).message}\n`);
  process.exit(1);
}
