// Run by session.test.ts in a process of its own: a real Cassandra behind a
// proxy that refuses connections for 38 s as a stopped node's port does, then
// accepts again. Prints {downMs, tookMs}: how long after the port accepted
// again the client answered, once the client is shut down. Nothing is left to
// keep the process alive then, so it exits by itself: the test waits for that.
import { TcpProxy } from "../../../test/support/tcp-proxy.js";
import { waitFor } from "../../../test/support/wait.js";
import { createClient } from "./session.js";

const proxy = await TcpProxy.start(process.env.CASSANDRA_TARGET!);
const client = createClient({ contactPoints: [proxy.address], localDataCenter: process.env.CASSANDRA_DC! });
await client.connect();
const answers = () => client.execute("SELECT release_version FROM system.local").then(() => true, () => false);
if (!(await answers())) throw new Error("no answer before the outage");
proxy.cut("refuse");
const downSince = Date.now();
await waitFor(async () => !(await answers()), "the node taken as down");
// Long enough for the driver's default schedule (1 s doubling to 10 minutes)
// to wait half a minute and more before its next attempt: its fifth attempt
// comes 35.65 s after the cut at the latest (1+2+4+8+16 s, each up to 15 %
// late), its sixth 53.7 s after it at the earliest (each up to 15 % early): back
// at 38 s, past the fifth with room for a busy machine's lag, it answers 15.7 s
// later at the soonest, nearly twice the test's bound.
await waitFor(() => Date.now() - downSince >= 38_000, "an outage of 38 s", 60_000, 100);
await proxy.restore();
const downMs = Date.now() - downSince;
const restoredAt = Date.now();
await waitFor(answers, "an answer after the node came back", 120_000, 100);
const tookMs = Date.now() - restoredAt;
await client.shutdown();
await proxy.close();
console.log(JSON.stringify({ downMs, tookMs }));
