// Smoke test: the local Redis answers ioredis (see scripts/engines.sh). Fails, never skips,
// when Redis is unreachable.
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { engineConfig, uniqueName, withTimeout } from '../support/engines.js';
import { waitFor } from '../support/wait.js';

describe('engines: redis (ioredis)', function () {
  this.timeout(30_000);
  const clients: Redis[] = [];
  const connect = async (): Promise<Redis> => {
    const url = engineConfig().redisUrl;
    const c = new Redis(url, {
      lazyConnect: true,
      // Fail fast instead of retrying forever when Redis is down.
      maxRetriesPerRequest: 1,
      retryStrategy: (times) => (times > 3 ? null : 200),
      connectTimeout: 3_000,
    });
    clients.push(c);
    // Connection errors surface through connect()/commands; without a listener ioredis
    // also prints them as "Unhandled error event".
    let lastError: Error | undefined;
    c.on('error', (err: Error) => (lastError = err));
    try {
      await c.connect();
    } catch (err) {
      throw new Error(`cannot connect to Redis at ${url}: ${lastError?.message ?? String(err)}`);
    }
    return c;
  };

  after(async () => {
    await Promise.all(clients.map((c) => c.quit().catch(() => c.disconnect())));
  });

  it('set/get/expire', async () => {
    const redis = await connect();
    const key = uniqueName('smoke:redis');
    assert.equal(await redis.set(key, 'v1'), 'OK');
    assert.equal(await redis.get(key), 'v1');
    assert.equal(await redis.expire(key, 60), 1);
    const ttl = await redis.ttl(key);
    assert.ok(ttl > 0 && ttl <= 60, `ttl ${ttl}`);
    // A short expiry really removes the key (polled with a deadline, no fixed sleep).
    assert.equal(await redis.pexpire(key, 100), 1);
    await waitFor(async () => (await redis.exists(key)) === 0, 'key to expire', 5_000);
    assert.equal(await redis.get(key), null);
  });

  it('pub/sub round trip', async () => {
    const sub = await connect();
    const pub = await connect();
    const channel = uniqueName('smoke:chan');
    const received = new Promise<[string, string]>((resolve) => {
      sub.on('message', (ch: string, msg: string) => {
        if (ch === channel) resolve([ch, msg]);
      });
    });
    await sub.subscribe(channel);
    assert.equal(await pub.publish(channel, 'hello'), 1, 'one subscriber should receive it');
    assert.deepEqual(await withTimeout(received, 5_000, 'pub/sub message'), [channel, 'hello']);
    await sub.unsubscribe(channel);
  });
});
