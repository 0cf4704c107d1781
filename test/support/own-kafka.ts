import { randomBytes } from "node:crypto";
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import kafkajs from "kafkajs";
import { freePort } from "./ports.js";
import { waitFor } from "./wait.js";

const LIB = resolve(import.meta.dirname, "../../.engines/kafka/lib");

/** Java 17 as scripts/engines.sh finds it (JAVA_HOME, then /usr/lib/jvm), which runs the shared Kafka. */
function java17(): string {
  const dirs = existsSync("/usr/lib/jvm") ? readdirSync("/usr/lib/jvm").filter((d) => d.includes("17")) : [];
  const candidates = [process.env.JAVA_HOME && join(process.env.JAVA_HOME, "bin/java"), ...dirs.map((d) => join("/usr/lib/jvm", d, "bin/java"))];
  const found = candidates.find((c): c is string => !!c && existsSync(c));
  if (!found) throw new Error("no Java 17 for a test's own Kafka (looked at JAVA_HOME, /usr/lib/jvm/*17*): run scripts/engines.sh up kafka first");
  return found;
}

/** A fresh KRaft cluster id (a base64url UUID; one starting with "-" reads as an option). */
const clusterId = () => randomBytes(16).toString("base64url").replace(/^-/, "A");

/**
 * A single-node Kafka of a test's own, from the jars scripts/engines.sh fetched,
 * on fresh storage and free ports: a cluster just started, whose first consumer
 * group makes it create its offsets topic (what the shared broker did once,
 * long ago). Never the shared one, which tests must not restart.
 */
export class OwnKafka {
  private child?: ChildProcess;
  private dir = "";
  brokers: string[] = [];

  async start(): Promise<void> {
    if (!existsSync(LIB)) throw new Error(`no Kafka jars at ${LIB}: run scripts/engines.sh up kafka first`);
    const java = java17();
    const [port, controller] = [await freePort(), await freePort()];
    this.dir = mkdtempSync(join(tmpdir(), "own-kafka-"));
    const conf = join(this.dir, "server.properties");
    writeFileSync(
      conf,
      [
        "process.roles=broker,controller",
        "node.id=1",
        `controller.quorum.voters=1@127.0.0.1:${controller}`,
        `listeners=PLAINTEXT://127.0.0.1:${port},CONTROLLER://127.0.0.1:${controller}`,
        `advertised.listeners=PLAINTEXT://127.0.0.1:${port}`,
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=PLAINTEXT",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        `log.dirs=${join(this.dir, "data")}`,
        "offsets.topic.replication.factor=1",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "default.replication.factor=1",
        "min.insync.replicas=1",
        "offsets.topic.num.partitions=8",
        "transaction.state.log.num.partitions=8",
        "group.initial.rebalance.delay.ms=0",
        "num.network.threads=2",
        "num.io.threads=2",
        "background.threads=2",
      ].join("\n"),
    );
    const jvm = [`-Xmx256m`, `-Dkafka.logs.dir=${join(this.dir, "logs")}`, "-Dlog4j.configuration=file:/dev/null", "-cp", `${LIB}/*`];
    await promisify(execFile)(java, [...jvm, "kafka.tools.StorageTool", "format", "-t", clusterId(), "-c", conf], { timeout: 60_000 });
    this.child = spawn(java, [...jvm, "kafka.Kafka", conf], { stdio: "ignore" });
    this.brokers = [`127.0.0.1:${port}`];
    const exited = once(this.child, "exit").then(() => {
      throw new Error("the test's own Kafka exited while starting");
    });
    await Promise.race([
      exited,
      waitFor(
        async () => {
          const admin = new kafkajs.Kafka({ brokers: this.brokers, logLevel: kafkajs.logLevel.NOTHING, retry: { retries: 0 } }).admin();
          try {
            await admin.connect();
            await admin.listTopics();
            return true;
          } catch {
            return false;
          } finally {
            await admin.disconnect().catch(() => {});
          }
        },
        "the test's own Kafka to answer",
        60_000,
        200,
      ),
    ]);
    exited.catch(() => {});
  }

  async stop(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (child && child.exitCode === null && child.signalCode === null) {
      const gone = once(child, "exit");
      child.kill("SIGKILL");
      await gone;
    }
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
  }
}
