// Smoke test: the local etcd answers etcd3 with leases, keep-alive and watches (see
// scripts/engines.sh). Fails, never skips, when etcd is unreachable.
import assert from 'node:assert/strict';
import { Etcd3, type Lease, type Watcher } from 'etcd3';
import { engineConfig, uniqueName, withTimeout } from '../support/engines.js';

describe('engines: etcd (etcd3)', function () {
  this.timeout(30_000);
  let client: Etcd3 | undefined;
  let watcher: Watcher | undefined;
  let lease: Lease | undefined;

  after(async () => {
    // An open watcher keeps the Node process alive: always cancel it, then close.
    await watcher?.cancel().catch(() => {});
    if (lease && !lease.revoked()) await lease.revoke().catch(() => {});
    client?.close();
  });

  it('lease keep-alive outlives the TTL; a prefix watch sees put and delete-on-revoke', async () => {
    client = new Etcd3({ hosts: engineConfig().etcdEndpoints.map((h) => `http://${h}`), dialTimeout: 3_000 });
    const prefix = `${uniqueName('smoke/etcd')}/`;
    const key = `${prefix}presence`;

    // Probe with a plain request first: etcd3 retries a watch stream forever when etcd is
    // down (and its timers keep the process alive even after close()), so only create the
    // watcher once etcd has answered.
    await client.maintenance.status();

    watcher = await withTimeout(client.watch().prefix(prefix).create(), 5_000, 'watcher');
    const put = new Promise<string>((resolve) => watcher!.on('put', (kv) => resolve(kv.key.toString())));
    const deleted = new Promise<string>((resolve) => watcher!.on('delete', (kv) => resolve(kv.key.toString())));

    const ttl = 2;
    lease = client.lease(ttl); // autoKeepAlive is on by default
    const lost = new Promise<never>((_, reject) => lease!.on('lost', (err) => reject(err)));
    lost.catch(() => {}); // observed below via Promise.race
    const grantedAt = Date.now();
    await lease.put(key).value('online');
    assert.equal(await withTimeout(Promise.race([put, lost]), 5_000, 'watch put event'), key);

    // Keep-alive: wait for a keepalive answered well after the TTL would have expired.
    await withTimeout(
      Promise.race([
        new Promise<void>((resolve) =>
          lease!.on('keepaliveSucceeded', () => {
            if (Date.now() - grantedAt > ttl * 1000 + 1_000) resolve();
          }),
        ),
        lost,
      ]),
      15_000,
      'keepalive after the TTL',
    );
    assert.equal(await client.get(key).string(), 'online', 'key must survive past its TTL');

    // Revoking the lease deletes the key, and the watcher sees it.
    await lease.revoke();
    assert.equal(await withTimeout(deleted, 5_000, 'watch delete event'), key);
    assert.equal(await client.get(key).string(), null);
  });
});
