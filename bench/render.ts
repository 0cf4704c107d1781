/** Re-renders the markdown of a run from its JSON: `npx tsx bench/render.ts bench/results/<run>.json`. */
import { readFileSync, writeFileSync } from "node:fs";
import { renderMarkdown } from "./lib/report.js";

for (const file of process.argv.slice(2)) {
  const md = renderMarkdown(JSON.parse(readFileSync(file, "utf8")));
  writeFileSync(file.replace(/\.json$/, ".md"), md);
  process.stdout.write(md);
}
