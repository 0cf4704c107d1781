import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { dropKeyspace, SCHEMA_CHANGE_TIMEOUT_MS } from "../../../test/support/cassandra.js";
import { engineConfig } from "../../../test/support/engines.js";
import { ADDED_COLUMNS, applySchema, SCHEMA_VERSION, TABLE_NAMES, tableBody, tableId } from "./schema.js";
import { createClient, type Client } from "./session.js";

const newKeyspace = () => `chat_test_${randomBytes(5).toString("hex")}`;

function connect(): Client {
  // Throws (fails the run) when the engines are not up: never a skip.
  const cfg = engineConfig();
  // Each statement here is a schema change, or a read right after one: 12 s (the default) fails on a loaded node.
  return createClient({ contactPoints: cfg.cassandraContactPoints, localDataCenter: cfg.cassandraDc, readTimeoutMs: SCHEMA_CHANGE_TIMEOUT_MS });
}

/** The statements a client sends from now on (applySchema's go through execute). */
function recordStatements(client: Client): string[] {
  const sent: string[] = [];
  const execute = client.execute.bind(client) as (...a: unknown[]) => unknown;
  (client as unknown as { execute: (...a: unknown[]) => unknown }).execute = (query: unknown, ...rest: unknown[]) => {
    sent.push(String(query));
    if (/^\s*(CREATE|ALTER)\b/i.test(String(query))) ddlTimeouts.push((rest[1] as { readTimeout?: number } | undefined)?.readTimeout);
    return execute(query, ...rest);
  };
  return sent;
}
/** The request timeout each schema change was sent with, by every recording client. */
const ddlTimeouts: (number | undefined)[] = [];

const addedColumns = Object.entries(ADDED_COLUMNS).flatMap(([t, cs]) => Object.entries(cs).map(([c, type]) => `${t}.${c} ${type}`));
const alters = (sent: string[]) => sent.filter((q) => /^\s*ALTER\b/i.test(q));

/** Every column of a keyspace, as "table.column type[ static]|kind position order" (all the shape a read relies on). */
async function columnsOf(client: Client, ks: string): Promise<string[]> {
  const r = await client.execute(
    "SELECT table_name, column_name, type, kind, position, clustering_order FROM system_schema.columns WHERE keyspace_name = ?",
    [ks],
    { prepare: true },
  );
  return r.rows.map((row) => `${row.get("table_name")}.${row.get("column_name")} ${row.get("type")}${row.get("kind") === "static" ? " static" : ""}` +
    `|${row.get("kind")} ${row.get("position")} ${row.get("clustering_order")}`).sort();
}
const typed = (columns: string[]) => new Set(columns.map((c) => c.slice(0, c.indexOf("|"))));

describe("cassandra schema: a new table has its added columns, an old one gets them by ALTER", function () {
  // Two keyspaces of every table, one upgraded by two clients at once: minutes on a loaded node.
  this.timeout(600_000);

  it("declares each added column once in a new table's body, and none in the body an older build made", () => {
    for (const [table, columns] of Object.entries(ADDED_COLUMNS)) {
      assert.ok(TABLE_NAMES.includes(table), `${table} is a table`);
      const body = tableBody(table).replace(/\s+/g, " ");
      const before = tableBody(table, { added: false }).replace(/\s+/g, " ");
      for (const [column, type] of Object.entries(columns)) {
        const declared = new RegExp(`[(,] ${column} `, "g");
        assert.equal(body.match(declared)?.length, 1, `${table}.${column} in ${body}`);
        assert.ok(body.includes(` ${column} ${type},`) || body.includes(` ${column} ${type})`), `${table}.${column} is ${type}: ${body}`);
        assert.equal(before.match(declared), null, `${table}.${column} not in ${before}`);
      }
    }
    for (const table of TABLE_NAMES.filter((t) => !(t in ADDED_COLUMNS))) assert.equal(tableBody(table, { added: false }), tableBody(table));
  });

  it("creates a fresh keyspace with no ALTER, in the shape an older keyspace is upgraded to by ALTER (two processes at once)", async () => {
    const fresh = newKeyspace();
    const old = newKeyspace();
    const [a, b] = [connect(), connect()];
    try {
      const sent = recordStatements(a);
      await applySchema(a, { keyspace: fresh });
      assert.deepEqual(alters(sent), [], "a fresh keyspace is altered");
      // The driver's 12 s default failed role starts on a loaded node, where the change still landed.
      assert.ok(ddlTimeouts.length > 0 && ddlTimeouts.every((t) => t === 60_000), `schema changes sent with readTimeout ${ddlTimeouts}`);
      const freshColumns = await columnsOf(a, fresh);
      const have = typed(freshColumns);
      for (const c of addedColumns) assert.ok(have.has(c), `${c} in the fresh keyspace`);

      // Every table as a build before its added columns made it (created WITH ID, as that build did).
      await a.execute(`CREATE KEYSPACE ${old} WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}`);
      for (const name of TABLE_NAMES) {
        const body = tableBody(name, { added: false });
        await a.execute(`CREATE TABLE ${old}.${name} ${body}${body.includes(" WITH ") ? " AND" : " WITH"} ID = ${tableId(old, name)}`);
      }
      await a.execute(`INSERT INTO ${old}.meta (key, value) VALUES ('bucket_size', '1000')`);
      await a.execute(`INSERT INTO ${old}.meta (key, value) VALUES ('schema_version', '7')`);
      assert.deepEqual([...typed(await columnsOf(a, old))].filter((c) => addedColumns.includes(c)), []);

      sent.length = 0;
      const sentByB = recordStatements(b);
      await Promise.all([applySchema(a, { keyspace: old }), applySchema(b, { keyspace: old })]);
      // Each missing column is added by one process or both (the second's refusal as a duplicate is success).
      const altered = new Set([...alters(sent), ...alters(sentByB)].map((q) => q.replace(/^ALTER TABLE \w+\.(\w+) ADD (\w+) (.*)$/s, "$1.$2 $3")));
      assert.deepEqual([...altered].sort(), [...addedColumns].sort());
      const upgraded = await columnsOf(a, old);
      assert.deepEqual(upgraded, freshColumns, "an upgraded keyspace has the fresh one's columns");
      const version = await a.execute(`SELECT value FROM ${old}.meta WHERE key = 'schema_version'`);
      assert.equal(version.first()?.get("value"), String(SCHEMA_VERSION));

      sent.length = 0;
      await applySchema(a, { keyspace: old });
      assert.deepEqual(alters(sent), [], "once upgraded, nothing left to add");
      assert.deepEqual(await columnsOf(a, old), upgraded);
    } finally {
      await dropKeyspace(a, fresh, () => dropKeyspace(a, old, () => Promise.all([a.shutdown(), b.shutdown()])));
    }
  });
});
