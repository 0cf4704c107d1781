import { EnvReader } from "../../internal/config/env.js";
import { backupDataDir } from "../../internal/storage/sqlite/backup.js";
import { exitOnConfigError } from "../shared.js";

// `npm run backup -- <new directory>`: a copy of chatd's data directory
// (CHAT_DATA_DIR), also while chatd runs. Restoring is starting chatd on the
// copy (CHAT_DATA_DIR=<copy>), or moving it into place while chatd is stopped.
const USAGE = "usage: npm run backup -- <new directory>   (copies CHAT_DATA_DIR, default .data, also while chatd runs)";

const source = exitOnConfigError("backup", () => {
  const r = new EnvReader();
  const dir = r.string("CHAT_DATA_DIR", ".data");
  r.done();
  return dir;
});
const target = process.argv[2];
if (!target || process.argv.length > 3 || target.startsWith("-")) {
  process.stderr.write(`${USAGE}\n`);
  process.exit(2);
}

try {
  const report = backupDataDir(source, target);
  const databases = report.databases.map((d) => `${d.name} (${(d.bytes / 1_048_576).toFixed(1)} MiB)`).join(", ");
  process.stdout.write(`backed up ${source} to ${report.target} in ${(report.ms / 1000).toFixed(1)} s: ${databases}; ${report.files.join(", ") || "no other files"}\n`);
} catch (err) {
  process.stderr.write(`backup: ${(err as Error).message}\n`);
  process.exit(1);
}
