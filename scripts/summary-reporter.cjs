// Mocha's spec output, then one plain line CI reads: "N passed, N failed".
const Mocha = require("mocha");
const { EVENT_RUN_END, EVENT_TEST_PASS, EVENT_TEST_FAIL, EVENT_HOOK_END } = Mocha.Runner.constants;

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
    });
    void EVENT_HOOK_END;
  }
}

module.exports = SummaryReporter;
