// Mocha's spec output, then one plain line CI reads: "N passed, N failed".
const Mocha = require("mocha");
const { EVENT_RUN_END, EVENT_TEST_PASS, EVENT_TEST_FAIL } = Mocha.Runner.constants;

// mocha runs without --exit, so a socket or timer a suite left open keeps the
// run alive after its last test: CI would wait out its whole time limit
// rather than say what was left. Past this grace, the run ends as a failure
// naming what still holds it.
const LINGER_MS = Number(process.env.CHAT_TEST_LINGER_MS || 60_000);

class SummaryReporter extends Mocha.reporters.Spec {
  constructor(runner, options) {
    super(runner, options);
    let passed = 0;
    let failed = 0;
    runner.on(EVENT_TEST_PASS, () => passed++);
    // A failing hook fails the tests it guards; count it so it cannot hide.
    runner.on(EVENT_TEST_FAIL, () => failed++);
    runner.once(EVENT_RUN_END, () => {
      process.stdout.write(`\n${passed} passed, ${failed} failed\n`);
      setTimeout(() => {
        const held = process
          .getActiveResourcesInfo()
          .filter((r) => r !== "Timeout" && r !== "TTYWrap")
          .join(", ");
        process.stdout.write(`\nthe run was still held open ${LINGER_MS} ms after its last test (by: ${held || "timers"}): a suite left something running\n`);
        process.stdout.write(`${passed} passed, ${failed + 1} failed\n`);
        // mocha's own exit listener sets the status to its failure count; this one runs after it.
        process.on("exit", () => (process.exitCode = 1));
        process.exit(1);
      }, LINGER_MS).unref();
    });
  }
}

module.exports = SummaryReporter;
