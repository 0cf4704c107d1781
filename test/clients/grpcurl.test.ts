import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { resolve } from "node:path";
import { promisify } from "node:util";
import * as grpc from "@grpc/grpc-js";
import { ChatServerServiceService } from "../../gen/ts-proto/chat/internal/v1/chat_server.js";
import { PresenceTrackerServiceService } from "../../gen/ts-proto/chat/internal/v1/presence_tracker.js";
import { ServingStatus, addReflectionAndHealth } from "../../internal/grpc/index.js";
import { removeDataDir, startChatd, type ChatdProcess } from "../support/chatd.js";
import { waitFor } from "../support/wait.js";

/**
 * grpcurl, the debugging client the design card names, against a running
 * chatd with no proto files: everything it knows comes from server reflection.
 * scripts/grpcurl.sh builds it with `go install` on first use.
 */

const ROOT = resolve(import.meta.dirname, "../..");
const run = promisify(execFile);

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

describe("grpcurl against chatd (server reflection, health, no proto files)", function () {
  // The first run builds grpcurl from the Go module proxy (about 90 s on 2 cores).
  this.timeout(600_000);
  let grpcurlBin: string;
  let chatd: ChatdProcess;
  let address: string;

  /** `grpcurl -plaintext [flags] target [command...]`; flags are the leading "-x value" pairs of `args`. */
  const grpcurl = async (args: string[], target = address): Promise<Result> => {
    let i = 0;
    while (i < args.length && args[i]!.startsWith("-")) i += 2;
    try {
      const { stdout, stderr } = await run(grpcurlBin, ["-plaintext", "-max-time", "20", ...args.slice(0, i), target, ...args.slice(i)], {
        timeout: 30_000,
      });
      return { code: 0, stdout, stderr };
    } catch (err) {
      const e = err as { code?: number; stdout?: string; stderr?: string };
      return { code: typeof e.code === "number" ? e.code : -1, stdout: e.stdout ?? "", stderr: e.stderr ?? String(err) };
    }
  };
  const ok = async (args: string[], target?: string): Promise<string> => {
    const r = await grpcurl(args, target);
    assert.equal(r.code, 0, `grpcurl ${args.join(" ")} failed:\n${r.stderr}${r.stdout}`);
    return r.stdout;
  };

  before(async () => {
    const built = await run("bash", [resolve(ROOT, "scripts/grpcurl.sh"), "path"], { cwd: ROOT, timeout: 540_000 });
    grpcurlBin = built.stdout.trim();
    chatd = await startChatd();
    address = new URL(chatd.grpcUrl).host;
  });
  after(async () => {
    await chatd?.stop();
    if (chatd) removeDataDir(chatd.dataDir);
  });

  it("lists the public services, reflection and health, and not the internal contracts", async () => {
    const services = (await ok(["list"])).trim().split("\n");
    for (const s of [
      "chat.v1.AuthService",
      "chat.v1.ChannelService",
      "chat.v1.MessageService",
      "chat.v1.SessionService",
      "chat.v1.UserService",
      "grpc.health.v1.Health",
      "grpc.reflection.v1.ServerReflection",
      "grpc.reflection.v1alpha.ServerReflection",
    ]) {
      assert.ok(services.includes(s), `${s} missing from:\n${services.join("\n")}`);
    }
    assert.ok(!services.some((s) => s.startsWith("chat.internal.")), "internal services are not on the public listener");
    const methods = await ok(["list", "chat.v1.AuthService"]);
    assert.match(methods, /^chat\.v1\.AuthService\.SignUp$/m);
  });

  it("describes messages and methods, with their comments, across imported files", async () => {
    const welcome = await ok(["describe", "chat.v1.Welcome"]);
    assert.match(welcome, /chat\.v1\.Welcome is a message/);
    assert.match(welcome, /uint32 heartbeat_interval_ms = 5;/);
    assert.match(welcome, /\.google\.protobuf\.Timestamp server_time = 4;/, "an imported well-known type resolves");
    assert.match(welcome, /first frame of every session/, "comments from the descriptor set");
    const connect = await ok(["describe", "chat.v1.SessionService.Connect"]);
    assert.match(connect, /rpc Connect \( stream \.chat\.v1\.ConnectRequest \) returns \( stream \.chat\.v1\.ConnectResponse \)/);
    // A message from another file of the same package (types.proto).
    assert.match(await ok(["describe", "chat.v1.Message"]), /chat\.v1\.Message is a message/);
    const missing = await grpcurl(["describe", "chat.v1.NoSuchThing"]);
    assert.notEqual(missing.code, 0);
  });

  it("calls a unary method with JSON in and out", async () => {
    const username = `curl${process.pid.toString(36)}${Math.random().toString(36).slice(2, 6)}`;
    const out = await ok([
      "-d",
      JSON.stringify({ username, password: "correct horse battery", display_name: "Curl", device: { name: "grpcurl" } }),
      "chat.v1.AuthService/SignUp",
    ]);
    const res = JSON.parse(out);
    assert.equal(res.user.username, username);
    assert.ok(res.credentials.accessToken.length > 20);
    // Errors arrive as gRPC statuses.
    const dup = await grpcurl([
      "-d",
      JSON.stringify({ username, password: "correct horse battery", display_name: "Curl", device: { name: "grpcurl" } }),
      "chat.v1.AuthService/SignUp",
    ]);
    assert.notEqual(dup.code, 0);
    assert.match(dup.stderr + dup.stdout, /Code: AlreadyExists/);
  });

  it("runs the realtime session as a bidi stream: welcome, heartbeat, heartbeat ack", async () => {
    const username = `bidi${process.pid.toString(36)}${Math.random().toString(36).slice(2, 6)}`;
    const signUp = JSON.parse(
      await ok([
        "-d",
        JSON.stringify({ username, password: "correct horse battery", display_name: "Bidi", device: { name: "grpcurl" } }),
        "chat.v1.AuthService/SignUp",
      ]),
    );
    const token: string = signUp.credentials.accessToken;
    // stdin stays open: the heartbeat goes out only once the welcome is in.
    const child = spawn(
      grpcurlBin,
      ["-plaintext", "-max-time", "30", "-H", `authorization: Bearer ${token}`, "-d", "@", address, "chat.v1.SessionService/Connect"],
      { stdio: ["pipe", "pipe", "pipe"] },
    );
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += String(d)));
    child.stderr.on("data", (d) => (stderr += String(d)));
    const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
    try {
      await waitFor(() => stdout.includes('"welcome"'), `the welcome (stderr: ${stderr})`);
      assert.match(stdout, new RegExp(`"userId": "${signUp.credentials.userId}"`));
      child.stdin.write(JSON.stringify({ frame: { ref: "7", heartbeat: {} } }) + "\n");
      await waitFor(() => stdout.includes('"heartbeatAck"'), `the heartbeat ack (stderr: ${stderr})`);
      assert.match(stdout, /"ref": "7",\s*"heartbeatAck"/);
      child.stdin.end();
      assert.equal(await exited, 0, `grpcurl ended with an error: ${stderr}`);
    } finally {
      child.kill();
    }
    // The README's one-shot form: the frames given, then the request side closed; what they asked is answered before the end.
    const once = await ok(["-H", `authorization: Bearer ${token}`, "-d", JSON.stringify({ frame: { ref: "1", heartbeat: {} } }), "chat.v1.SessionService/Connect"]);
    assert.match(once, /"welcome"[\s\S]*"ref": "1",\s*"heartbeatAck"/);
  });

  it("answers the standard health service", async () => {
    assert.deepEqual(JSON.parse(await ok(["grpc.health.v1.Health/Check"])), { status: "SERVING" });
    assert.deepEqual(JSON.parse(await ok(["-d", '{"service":"chat.v1.SessionService"}', "grpc.health.v1.Health/Check"])), {
      status: "SERVING",
    });
    const unknown = await grpcurl(["-d", '{"service":"no.such.Service"}', "grpc.health.v1.Health/Check"]);
    assert.notEqual(unknown.code, 0);
    assert.match(unknown.stderr + unknown.stdout, /Code: NotFound/);
    // Watch is server streaming: the current status at once, then every change, until the client goes.
    const watch = spawn(grpcurlBin, ["-plaintext", "-d", '{"service":"chat.v1.AuthService"}', address, "grpc.health.v1.Health/Watch"], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    watch.stdout.on("data", (d) => (out += String(d)));
    watch.stderr.on("data", (d) => (err += String(d)));
    try {
      await waitFor(() => out.includes('"status": "SERVING"'), `the first Watch message (stderr: ${err})`);
      assert.equal(watch.exitCode, null, "the Watch stream stays open");
    } finally {
      watch.kill();
    }
  });

  it("works the same against a grpc-js Server with addReflectionAndHealth (the internal services' servers)", async () => {
    const server = new grpc.Server();
    server.addService(ChatServerServiceService, {});
    server.addService(PresenceTrackerServiceService, {});
    const { health } = addReflectionAndHealth(server, [ChatServerServiceService, PresenceTrackerServiceService]);
    const port = await new Promise<number>((res, rej) =>
      server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) => (err ? rej(err) : res(p))),
    );
    const target = `127.0.0.1:${port}`;
    try {
      const services = (await ok(["list"], target)).trim().split("\n");
      assert.deepEqual(services, [
        "chat.internal.v1.ChatServerService",
        "chat.internal.v1.PresenceTrackerService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
      ]);
      assert.match(await ok(["describe", "chat.internal.v1.ChatServerService"], target), /is a service/);
      assert.ok(!services.some((s) => s.startsWith("chat.v1.")), "only what this server serves");
      assert.deepEqual(JSON.parse(await ok(["-d", '{"service":"chat.internal.v1.ChatServerService"}', "grpc.health.v1.Health/Check"], target)), {
        status: "SERVING",
      });
      health.shutdown();
      assert.equal(health.get(""), ServingStatus.NOT_SERVING);
      assert.deepEqual(JSON.parse(await ok(["grpc.health.v1.Health/Check"], target)), { status: "NOT_SERVING" });
    } finally {
      server.forceShutdown();
    }
  });
});
