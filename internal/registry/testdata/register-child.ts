// A chat server stand-in for etcd.test.ts: registers, says so on stdout, and waits to be
// killed (SIGKILL: no revoke, no goodbye), so the test can time how fast its entry vanishes.
import { EtcdServerRegistry } from "../etcd.js";

const registry = new EtcdServerRegistry({
  endpoints: (process.env.ETCD_ENDPOINTS ?? "").split(","),
  prefix: process.env.REGISTRY_PREFIX!,
  ttlSeconds: Number(process.env.TTL_SECONDS ?? "2"),
});
await registry.register({ serverId: process.env.SERVER_ID!, address: "127.0.0.1:9999", load: 0 });
process.stdout.write("registered\n");
setInterval(() => {}, 60_000);
