// Readiness probe used by scripts/engines.sh: one real client request per call.
//   node scripts/engines/check.mjs kafka 127.0.0.1:19092
//   node scripts/engines/check.mjs cassandra 127.0.0.1:19042 datacenter1
//   node scripts/engines/check.mjs clients     (can the two above load their client?)
// Exit 0 and print a short detail line when the engine answers, exit 1 otherwise.
// The script polls by calling this repeatedly, so every attempt here is short.
const [engine, address, dc = 'datacenter1'] = process.argv.slice(2);
const fail = (err) => {
  process.stderr.write(`${engine} not ready: ${err?.message ?? err}\n`);
  process.exit(1);
};
// Never hang: the caller loops with its own deadline.
setTimeout(() => fail(new Error('probe timed out')), 10_000).unref();

try {
  if (engine === 'clients') {
    // Whether the probes below can run at all (engines.sh asks before it waits on them).
    await import('kafkajs');
    await import('cassandra-driver');
    process.exit(0);
  }
  if (engine === 'kafka') {
    const { Kafka, logLevel } = (await import('kafkajs')).default;
    const kafka = new Kafka({
      clientId: 'engines-check',
      brokers: [address],
      logLevel: logLevel.NOTHING,
      connectionTimeout: 2000,
      requestTimeout: 5000,
      retry: { retries: 0 },
    });
    const admin = kafka.admin();
    await admin.connect();
    // A metadata round trip that only a serving broker (with an elected controller) answers.
    const cluster = await admin.describeCluster();
    const topics = await admin.listTopics();
    await admin.disconnect();
    console.log(`brokers=${cluster.brokers.length} controller=${cluster.controller} topics=${topics.length}`);
  } else if (engine === 'cassandra') {
    const cassandra = (await import('cassandra-driver')).default;
    const client = new cassandra.Client({
      contactPoints: [address],
      localDataCenter: dc,
      socketOptions: { connectTimeout: 3000, readTimeout: 5000 },
    });
    try {
      await client.connect();
      const rs = await client.execute('SELECT release_version FROM system.local');
      console.log(`release_version=${rs.first().release_version}`);
    } finally {
      await client.shutdown().catch(() => {});
    }
  } else {
    fail(new Error(`unknown engine ${engine}`));
  }
  process.exit(0);
} catch (err) {
  fail(err);
}
