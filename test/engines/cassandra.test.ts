// Smoke test: the local Cassandra answers cassandra-driver (see scripts/engines.sh). Fails,
// never skips, when Cassandra is unreachable.
import assert from 'node:assert/strict';
import cassandra from 'cassandra-driver';
import { dropKeyspace, SCHEMA_CHANGE_TIMEOUT_MS } from '../support/cassandra.js';
import { engineConfig, uniqueName } from '../support/engines.js';

describe('engines: cassandra (cassandra-driver)', function () {
  // Schema changes on a loaded node take up to SCHEMA_CHANGE_TIMEOUT_MS each (see dropKeyspace).
  this.timeout(4 * SCHEMA_CHANGE_TIMEOUT_MS);
  let client: cassandra.Client | undefined;
  let keyspace: string | undefined;

  after(async () => {
    const open = client;
    if (!open) return;
    if (keyspace) await dropKeyspace(open, keyspace, () => open.shutdown());
    else await open.shutdown();
  });

  it('creates a keyspace and table, writes and reads at LOCAL_QUORUM, drops the keyspace', async () => {
    const cfg = engineConfig();
    client = new cassandra.Client({
      contactPoints: cfg.cassandraContactPoints,
      localDataCenter: cfg.cassandraDc,
      socketOptions: { connectTimeout: 5_000 },
    });
    await client.connect();

    keyspace = uniqueName('smoke').toLowerCase();
    const ddl = { readTimeout: SCHEMA_CHANGE_TIMEOUT_MS };
    await client.execute(
      `CREATE KEYSPACE ${keyspace} WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}`,
      [],
      ddl,
    );
    await client.execute(
      `CREATE TABLE ${keyspace}.messages (chat_id text, seq bigint, body text, PRIMARY KEY (chat_id, seq))`,
      [],
      ddl,
    );

    const q = cassandra.types.consistencies.localQuorum;
    const insert = `INSERT INTO ${keyspace}.messages (chat_id, seq, body) VALUES (?, ?, ?)`;
    for (let i = 1; i <= 3; i++) {
      await client.execute(insert, ['chat-1', cassandra.types.Long.fromNumber(i), `hello ${i}`], {
        prepare: true,
        consistency: q,
      });
    }
    const rs = await client.execute(
      `SELECT seq, body FROM ${keyspace}.messages WHERE chat_id = ? ORDER BY seq DESC`,
      ['chat-1'],
      { prepare: true, consistency: q },
    );
    assert.deepEqual(
      rs.rows.map((r) => [Number(r.seq), r.body]),
      [
        [3, 'hello 3'],
        [2, 'hello 2'],
        [1, 'hello 1'],
      ],
    );

    await client.execute(`DROP KEYSPACE ${keyspace}`, [], ddl);
    const left = await client.execute('SELECT keyspace_name FROM system_schema.keyspaces WHERE keyspace_name = ?', [
      keyspace,
    ]);
    assert.equal(left.rowLength, 0, 'keyspace should be gone');
    keyspace = undefined;
  });
});
