// Preloaded into the server processes by `npm run bench -- --alloc` (`node --import`).
// Plain JavaScript because it loads before tsx. SIGUSR2 starts V8's sampling heap
// profiler, counting objects the collector has already freed too, so the profile
// is what the process allocated, not what it kept; the next SIGUSR2 writes it to
// $CHAT_BENCH_ALLOC_DIR/<pid>-<n>.heapprofile (renamed into place once whole).
import { Session } from "node:inspector";
import { mkdirSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const dir = process.env.CHAT_BENCH_ALLOC_DIR;
if (dir) {
  mkdirSync(dir, { recursive: true });
  const session = new Session();
  session.connect();
  let sampling = false;
  let written = 0;
  const fail = (what, err) => process.stderr.write(`alloc-sampler: ${what}: ${err.message}\n`);
  process.on("SIGUSR2", () => {
    if (!sampling) {
      sampling = true;
      session.post("HeapProfiler.enable", () =>
        session.post(
          "HeapProfiler.startSampling",
          { samplingInterval: 4096, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true },
          (err) => err && fail("start", err),
        ),
      );
      return;
    }
    sampling = false;
    session.post("HeapProfiler.stopSampling", (err, res) => {
      if (err) return fail("stop", err);
      const file = join(dir, `${process.pid}-${++written}.heapprofile`);
      writeFileSync(`${file}.part`, JSON.stringify(res.profile));
      renameSync(`${file}.part`, file);
    });
  });
}
