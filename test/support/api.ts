import { once } from "node:events";
import http from "node:http";
import { ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { AuthService } from "../../gen/es/chat/v1/auth_pb.js";
import { ChannelService } from "../../gen/es/chat/v1/channels_pb.js";
import { MessageService } from "../../gen/es/chat/v1/messages_pb.js";
import { UserService } from "../../gen/es/chat/v1/users_pb.js";

export interface ApiClients {
  auth: Client<typeof AuthService>;
  users: Client<typeof UserService>;
  channels: Client<typeof ChannelService>;
  messages: Client<typeof MessageService>;
}

/** Connect clients over HTTP/1.1, as a browser would use them, with an optional access token. */
export function apiClients(baseUrl: string, token?: string): ApiClients {
  const auth: Interceptor = (next) => (req) => {
    if (token) req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };
  const transport = createConnectTransport({ baseUrl, httpVersion: "1.1", interceptors: [auth] });
  return {
    auth: createClient(AuthService, transport),
    users: createClient(UserService, transport),
    channels: createClient(ChannelService, transport),
    messages: createClient(MessageService, transport),
  };
}

export interface TestUser {
  userId: bigint;
  username: string;
  password: string;
  /** One access token per signed-in device, the first from sign-up. */
  devices: { deviceId: bigint; token: string; refreshToken: string }[];
  api: ApiClients;
}

let counter = 0;

/** Signs a fresh user up (unique name per run) and returns its first device's credentials. */
export async function signUp(baseUrl: string, prefix = "u"): Promise<TestUser> {
  const username = `${prefix}${process.pid.toString(36)}_${(counter++).toString(36)}_${Math.random().toString(36).slice(2, 6)}`.slice(0, 32);
  const password = "correct horse battery";
  const res = await apiClients(baseUrl).auth.signUp({ username, password, displayName: username, device: { name: "test" } });
  const c = res.credentials!;
  return {
    userId: c.userId,
    username,
    password,
    devices: [{ deviceId: c.deviceId, token: c.accessToken, refreshToken: c.refreshToken }],
    api: apiClients(baseUrl, c.accessToken),
  };
}

/** Signs an existing user in on another device. */
export async function addDevice(baseUrl: string, user: TestUser): Promise<{ deviceId: bigint; token: string }> {
  const res = await apiClients(baseUrl).auth.login({ username: user.username, password: user.password, device: { name: "second" } });
  const d = { deviceId: res.credentials!.deviceId, token: res.credentials!.accessToken, refreshToken: res.credentials!.refreshToken };
  user.devices.push(d);
  return d;
}

/**
 * `count` sign-ups sent at once over HTTP/1.1 on `agent`'s connections,
 * resolved when all are on the wire; `answers` settle with each one's status
 * code or the error that cut it. Each hashes a password (argon2id, behind
 * the thread pool's four threads), so most are still being answered a while
 * after the first one is: requests in flight for a stop to answer. `agent`
 * keeps `count` connections alive (maxSockets), each used once before.
 */
export async function signUpsInFlight(baseUrl: string, agent: http.Agent, count: number): Promise<{ answers: Promise<string>[] }> {
  // `count` connections accepted and kept alive first: a connection still in the listen backlog
  // when the listener closes is the kernel's to reset, whatever the server does.
  const healthz = new URL("/healthz", baseUrl);
  await Promise.all(
    Array.from({ length: count }, () => new Promise<void>((resolve, reject) => http.get(healthz, { agent }, (res) => res.resume().on("end", resolve)).on("error", reject))),
  );
  const url = new URL("/chat.v1.AuthService/SignUp", baseUrl);
  const run = Date.now().toString(36);
  const sent = Array.from({ length: count }, (_, i) => {
    const body = JSON.stringify({ username: `drain${run}${i}`, password: "correct horse battery", displayName: "d", device: { name: "d" } });
    const req = http.request(url, { method: "POST", agent, headers: { "content-type": "application/json" } });
    const answer = new Promise<string>((resolve) => {
      req.on("response", (res) => {
        res.resume();
        res.on("end", () => resolve(String(res.statusCode)));
      });
      req.on("error", (err) => resolve(err.message));
    });
    req.end(body);
    return { finished: once(req, "finish"), answer };
  });
  await Promise.all(sent.map((s) => s.finished));
  return { answers: sent.map((s) => s.answer) };
}

/**
 * `count` sign-ups over native gRPC, spread over `connections` HTTP/2
 * connections (each takes at most 100 streams at once), each answer "OK" or
 * the message of the error that cut it: as signUpsInFlight, calls in flight
 * for a stop to answer.
 */
export function grpcSignUpsInFlight(grpcUrl: string, count: number, connections = 1, timeoutMs = 30_000): Promise<string>[] {
  const clients = Array.from({ length: connections }, () => createClient(AuthService, createGrpcTransport({ baseUrl: grpcUrl })));
  const run = `g${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
  return Array.from({ length: count }, (_, i) =>
    clients[i % connections]!
      .signUp({ username: `${run}${i}`, password: "correct horse battery", displayName: "d", device: { name: "d" } }, { timeoutMs })
      .then(
        () => "OK",
        (err: unknown) => ConnectError.from(err).message,
      ),
  );
}

/** The ConnectError a call fails with; fails the test when the call succeeds. */
export async function rpcError(call: () => Promise<unknown>): Promise<ConnectError> {
  try {
    await call();
  } catch (e) {
    return ConnectError.from(e);
  }
  throw new Error("expected the call to fail");
}
