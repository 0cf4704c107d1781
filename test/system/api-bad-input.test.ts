import assert from "node:assert/strict";
import { gzipSync } from "node:zlib";
import { Code as GrpcCode, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { create, fromBinary, toBinary, toJson, type DescMessage, type DescMethod, type DescService, type MessageInitShape } from "@bufbuild/protobuf";
import { AuthService } from "../../gen/es/chat/v1/auth_pb.js";
import { ChannelService } from "../../gen/es/chat/v1/channels_pb.js";
import { MessageService } from "../../gen/es/chat/v1/messages_pb.js";
import { PresenceService } from "../../gen/es/chat/v1/presence_pb.js";
import { PushService } from "../../gen/es/chat/v1/push_pb.js";
import { UserService } from "../../gen/es/chat/v1/users_pb.js";
import { signUp, type TestUser } from "../support/api.js";
import { useChatd } from "../support/chatd.js";
import { waitFor } from "../support/wait.js";
import { startRole, useDeployment, type RoleProcess } from "../support/processes.js";

/**
 * Hostile but well-formed requests to every public RPC, each answered with a
 * clear refusal (a code that is the client's to fix, a message saying what),
 * never INTERNAL or UNKNOWN, never a hang, never a change half made. Each
 * case goes over Connect's binary and JSON codecs: the JSON one is sent as
 * written (a lone surrogate, an enum number past the known ones), the binary
 * one as protobuf-es encodes the same message.
 */

const MAX_U64 = (1n << 64n) - 1n;
const MAX_ID = (1n << 63n) - 1n;
/** An id no account, device or channel has: ids are snowflakes, far below this. */
const NO_SUCH = MAX_ID - 7n;
const LONG = "x".repeat(100_001);
const LONG_ASTRAL = "😀".repeat(100_001);

type Code = "http 431" |"ok" | "invalid_argument" | "not_found" | "permission_denied" | "resource_exhausted" | "failed_precondition" | "unauthenticated" | "already_exists" | "out_of_range";

interface Case {
  name: string;
  method: DescMethod;
  /** The request, as protobuf-es builds it (ids as bigint). */
  req: Record<string, unknown>;
  /** The JSON body as sent, when it must say what toJson would not (a lone surrogate); the binary leg is skipped then. */
  json?: string;
  expect: Code[];
  /** What the refusal's message must say (the field, most often). */
  says?: RegExp;
  /** Whose token: the default is alice's. */
  as?: "alice" | "carol" | "nobody";
  /** Not over gRPC: refused by HTTP/2 before any handler (a header list past the server's). */
  noGrpc?: boolean;
  /** A bearer token sent as it is, instead of alice's. */
  token?: string;
}

interface Answer {
  code: Code | string;
  message: string;
}

function methodOf<S extends DescService>(service: S, name: keyof S["method"] & string): DescMethod {
  return (service.method as Record<string, DescMethod>)[name]!;
}

async function call(baseUrl: string, method: DescMethod, body: Uint8Array | string, token: string | undefined): Promise<Answer> {
  const binary = typeof body !== "string";
  const res = await fetch(`${baseUrl}/${method.parent.typeName}/${method.name}`, {
    method: "POST",
    headers: { "content-type": binary ? "application/proto" : "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: typeof body === "string" ? body : Buffer.from(body),
    signal: AbortSignal.timeout(15_000),
  });
  const bytes = new Uint8Array(await res.arrayBuffer());
  if (res.status === 200) return { code: "ok", message: "" };
  // Refused by Node's HTTP parser before any handler (a header past its 16 KiB): a status and no body.
  if (!(res.headers.get("content-type") ?? "").startsWith("application/json")) return { code: `http ${res.status}`, message: res.statusText };
  const err = JSON.parse(new TextDecoder().decode(bytes)) as { code?: string; message?: string };
  return { code: err.code ?? `http ${res.status}`, message: err.message ?? "" };
}

// Several hundred calls of one account in a few seconds: no per-account call rate here.
const NO_CALL_RATE = { CHAT_API_CALLS_PER_SEC: "100000", CHAT_API_CALL_BURST: "100000" };

badInput("chatd system (SQLite)", () => {
  const suite = useChatd({ env: NO_CALL_RATE });
  return {
    get target() {
      return suite.chatd;
    },
  };
});

// The cluster's api role on Cassandra, with a pipeline to sequence the sends.
badInput("cluster (api on Cassandra)", () => {
  const { env } = useDeployment("bad");
  let api: RoleProcess | undefined;
  before(async () => {
    api = await startRole("api", { ...env, ...NO_CALL_RATE });
    await startRole("pipeline", env);
  });
  return {
    get target() {
      if (!api) throw new Error("started by the suite's before hook");
      return { httpUrl: String(api.info.http), grpcUrl: String(api.info.grpc) };
    },
  };
});

function badInput(label: string, useTarget: () => { readonly target: { httpUrl: string; grpcUrl: string } }): void {
describe(`${label}: bad input to the public api`, function () {
  this.timeout(300_000);
  const suite = useTarget();
  let alice: TestUser;
  let bob: TestUser;
  let carol: TestUser;
  let alicesGroup: bigint;
  let bobsGroup: bigint;
  let direct: bigint;
  /** A message of carol's in alice's group. */
  let carolsSeq: bigint;

  before(async () => {
    const url = suite.target.httpUrl;
    [alice, bob, carol] = await Promise.all([signUp(url, "alice"), signUp(url, "bob"), signUp(url, "carol")]);
    alicesGroup = (await alice.api.channels.createGroup({ title: "alice's", memberUserIds: [carol.userId] })).channel!.channelId;
    bobsGroup = (await bob.api.channels.createGroup({ title: "bob's", memberUserIds: [carol.userId] })).channel!.channelId;
    direct = (await alice.api.channels.openDirect({ userId: carol.userId })).channel!.channelId;
    await alice.api.messages.sendMessage({ clientMsgId: "m1", channelId: alicesGroup, text: "hello" });
    await bob.api.messages.sendMessage({ clientMsgId: "m1", channelId: bobsGroup, text: "bob's secret" });
    await carol.api.messages.sendMessage({ clientMsgId: "c1", channelId: alicesGroup, text: "carol's" });
    carolsSeq = await waitFor(async () => (await alice.api.messages.listMessages({ channelId: alicesGroup })).messages.find((m) => m.text === "carol's")?.seq, "carol's message to be stored");
  });

  const cases = (): Case[] => {
    const A = AuthService, U = UserService, C = ChannelService, M = MessageService, P = PresenceService, Pu = PushService;
    const IA: Code[] = ["invalid_argument"];
    const NF: Code[] = ["not_found", "permission_denied"];
    return [
      // AuthService
      { name: "SignUp empty", method: methodOf(A, "signUp"), req: {}, expect: IA, says: /username/, as: "nobody" },
      { name: "SignUp whitespace username", method: methodOf(A, "signUp"), req: { username: "   ", password: "correct horse" }, expect: IA, says: /username/, as: "nobody" },
      { name: "SignUp NUL in username", method: methodOf(A, "signUp"), req: { username: "ab\u0000cd", password: "correct horse" }, expect: IA, says: /username/, as: "nobody" },
      { name: "SignUp 100,001 code point display name", method: methodOf(A, "signUp"), req: { username: "fuzzlong1", password: "correct horse", displayName: LONG }, expect: IA, says: /display_name/, as: "nobody" },
      { name: "SignUp control characters in display name", method: methodOf(A, "signUp"), req: { username: "fuzzctl1", password: "correct horse", displayName: "a\u0007b" }, expect: IA, says: /display_name/, as: "nobody" },
      { name: "SignUp 100,001 emoji password", method: methodOf(A, "signUp"), req: { username: "fuzzpw1", password: LONG_ASTRAL }, expect: IA, says: /password/, as: "nobody" },
      { name: "SignUp device name of 100,001", method: methodOf(A, "signUp"), req: { username: "fuzzdev1", password: "correct horse", device: { name: LONG } }, expect: IA, says: /name/, as: "nobody" },
      // A platform only labels the device, and one a newer client knows is no reason to refuse its sign-up: read as unspecified.
      { name: "SignUp device platform 99", method: methodOf(A, "signUp"), req: { username: "fuzzplat1", password: "correct horse", device: { name: "d", platform: 99 } }, expect: ["ok", "already_exists"], as: "nobody" },
      { name: "SignUp lone surrogate display name", method: methodOf(A, "signUp"), req: {}, json: '{"username":"fuzzsur1","password":"correct horse","displayName":"a\\ud800b"}', expect: IA, as: "nobody" },
      { name: "SignUp unknown field", method: methodOf(A, "signUp"), req: {}, json: '{"username":"fuzzunk1","password":"correct horse","admin":true}', expect: IA, as: "nobody" },
      { name: "Login empty", method: methodOf(A, "login"), req: {}, expect: ["invalid_argument", "unauthenticated"], as: "nobody" },
      { name: "Login 100,001 username", method: methodOf(A, "login"), req: { username: LONG, password: "correct horse" }, expect: ["invalid_argument", "unauthenticated"], as: "nobody" },
      { name: "Login 100,001 password", method: methodOf(A, "login"), req: { username: "nosuchuser", password: LONG }, expect: ["invalid_argument", "unauthenticated"], as: "nobody" },
      { name: "Refresh empty", method: methodOf(A, "refresh"), req: {}, expect: ["invalid_argument", "unauthenticated"], as: "nobody" },
      { name: "Refresh 100,001 token", method: methodOf(A, "refresh"), req: { refreshToken: LONG }, expect: ["invalid_argument", "unauthenticated"], as: "nobody" },
      { name: "Refresh NUL token", method: methodOf(A, "refresh"), req: { refreshToken: "\u0000.\u0000" }, expect: ["invalid_argument", "unauthenticated"], as: "nobody" },
      { name: "RevokeDevice 0", method: methodOf(A, "revokeDevice"), req: { deviceId: 0n }, expect: IA, says: /device_id/ },
      { name: "RevokeDevice 2^64-1", method: methodOf(A, "revokeDevice"), req: { deviceId: MAX_U64 }, expect: ["invalid_argument", "not_found"], says: /device/ },
      { name: "RevokeDevice another's", method: methodOf(A, "revokeDevice"), req: { deviceId: bob.devices[0]!.deviceId }, expect: NF },
      { name: "ChangePassword empty", method: methodOf(A, "changePassword"), req: {}, expect: ["invalid_argument", "unauthenticated", "permission_denied"] },
      { name: "ChangePassword 100,001 new", method: methodOf(A, "changePassword"), req: { currentPassword: alice.password, newPassword: LONG }, expect: IA, says: /password/ },
      { name: "DeleteAccount wrong password", method: methodOf(A, "deleteAccount"), req: { password: LONG }, expect: ["invalid_argument", "unauthenticated", "permission_denied"] },
      { name: "ListDevices unexpected field", method: methodOf(A, "listDevices"), req: {}, json: '{"deviceId":"1"}', expect: IA },
      // UserService
      { name: "UpdateProfile empty", method: methodOf(U, "updateProfile"), req: {}, expect: IA, says: /display_name/ },
      { name: "UpdateProfile whitespace", method: methodOf(U, "updateProfile"), req: { displayName: " \t\u3000 " }, expect: IA, says: /display_name/ },
      { name: "UpdateProfile NUL", method: methodOf(U, "updateProfile"), req: { displayName: "a\u0000b" }, expect: IA, says: /display_name/ },
      { name: "UpdateProfile 100,001", method: methodOf(U, "updateProfile"), req: { displayName: LONG_ASTRAL }, expect: IA, says: /display_name/ },
      { name: "UpdateProfile lone surrogate", method: methodOf(U, "updateProfile"), req: {}, json: '{"displayName":"\\udc00"}', expect: IA },
      { name: "GetUsers 10,000 ids", method: methodOf(U, "getUsers"), req: { userIds: Array.from({ length: 10_000 }, (_, i) => BigInt(i + 1)) }, expect: ["invalid_argument", "resource_exhausted"], says: /user_ids/ },
      { name: "GetUsers 0", method: methodOf(U, "getUsers"), req: { userIds: [0n] }, expect: IA, says: /user_ids/ },
      { name: "GetUsers 2^64-1", method: methodOf(U, "getUsers"), req: { userIds: [MAX_U64] }, expect: IA, says: /user_ids/ },
      { name: "SearchUsers empty", method: methodOf(U, "searchUsers"), req: {}, expect: ["invalid_argument", "ok"] },
      { name: "SearchUsers 100,001", method: methodOf(U, "searchUsers"), req: { query: LONG }, expect: ["invalid_argument", "ok"] },
      { name: "SearchUsers NUL, limit 2^32-1", method: methodOf(U, "searchUsers"), req: { query: "\u0000", limit: 0xffffffff }, expect: ["invalid_argument", "ok"] },
      { name: "SearchUsers query syntax", method: methodOf(U, "searchUsers"), req: { query: "%_\\'\"*(" }, expect: ["invalid_argument", "ok"] },
      { name: "SearchUsers lone surrogate", method: methodOf(U, "searchUsers"), req: {}, json: '{"query":"ab\\udfff"}', expect: ["invalid_argument"] },
      { name: "SendFriendRequest 0", method: methodOf(U, "sendFriendRequest"), req: { userId: 0n }, expect: IA, says: /user_id/ },
      { name: "SendFriendRequest 2^64-1", method: methodOf(U, "sendFriendRequest"), req: { userId: MAX_U64 }, expect: IA, says: /user_id/ },
      { name: "SendFriendRequest no such user", method: methodOf(U, "sendFriendRequest"), req: { userId: NO_SUCH }, expect: ["not_found"] },
      { name: "SendFriendRequest self", method: methodOf(U, "sendFriendRequest"), req: { userId: alice.userId }, expect: ["invalid_argument", "failed_precondition"] },
      { name: "RespondFriendRequest none", method: methodOf(U, "respondFriendRequest"), req: { userId: bob.userId, accept: true }, expect: ["not_found", "failed_precondition"] },
      { name: "RespondFriendRequest 2^64-1", method: methodOf(U, "respondFriendRequest"), req: { userId: MAX_U64, accept: true }, expect: IA, says: /user_id/ },
      { name: "RemoveFriend 0", method: methodOf(U, "removeFriend"), req: { userId: 0n }, expect: IA, says: /user_id/ },
      { name: "RemoveFriend no such user", method: methodOf(U, "removeFriend"), req: { userId: NO_SUCH }, expect: ["not_found", "ok", "failed_precondition"] },
      { name: "BlockUser self", method: methodOf(U, "blockUser"), req: { userId: alice.userId }, expect: ["invalid_argument", "failed_precondition"] },
      { name: "BlockUser 2^64-1", method: methodOf(U, "blockUser"), req: { userId: MAX_U64 }, expect: IA, says: /user_id/ },
      { name: "BlockUser no such user", method: methodOf(U, "blockUser"), req: { userId: NO_SUCH }, expect: ["not_found"] },
      { name: "UnblockUser 0", method: methodOf(U, "unblockUser"), req: { userId: 0n }, expect: IA, says: /user_id/ },
      // ChannelService
      { name: "OpenDirect 0", method: methodOf(C, "openDirect"), req: { userId: 0n }, expect: IA, says: /user_id/ },
      { name: "OpenDirect self", method: methodOf(C, "openDirect"), req: { userId: alice.userId }, expect: ["invalid_argument", "failed_precondition"] },
      { name: "OpenDirect 2^64-1", method: methodOf(C, "openDirect"), req: { userId: MAX_U64 }, expect: IA, says: /user_id/ },
      { name: "OpenDirect no such user", method: methodOf(C, "openDirect"), req: { userId: NO_SUCH }, expect: ["not_found"] },
      { name: "CreateGroup empty title", method: methodOf(C, "createGroup"), req: { title: "" }, expect: IA, says: /title/ },
      { name: "CreateGroup 100,001 title", method: methodOf(C, "createGroup"), req: { title: LONG }, expect: IA, says: /title/ },
      { name: "CreateGroup NUL title", method: methodOf(C, "createGroup"), req: { title: "\u0000" }, expect: IA, says: /title/ },
      { name: "CreateGroup 200 members", method: methodOf(C, "createGroup"), req: { title: "t", memberUserIds: Array.from({ length: 200 }, (_, i) => BigInt(i + 1)) }, expect: ["failed_precondition"], says: /at most 100 members/ },
      // Duplicates are one member: this is a group of two.
      { name: "CreateGroup the same member 10,000 times", method: methodOf(C, "createGroup"), req: { title: "t", memberUserIds: Array.from({ length: 10_000 }, () => carol.userId) }, expect: ["ok"] },
      { name: "CreateGroup member 0", method: methodOf(C, "createGroup"), req: { title: "t", memberUserIds: [0n] }, expect: IA, says: /member_user_ids/ },
      { name: "CreateGroup member 2^64-1", method: methodOf(C, "createGroup"), req: { title: "t", memberUserIds: [MAX_U64] }, expect: IA, says: /member_user_ids/ },
      { name: "CreateGroup no such member", method: methodOf(C, "createGroup"), req: { title: "t", memberUserIds: [NO_SUCH] }, expect: ["not_found", "invalid_argument"] },
      { name: "DescribeChannel 0", method: methodOf(C, "describeChannel"), req: { channelId: 0n }, expect: IA, says: /channel_id/ },
      { name: "DescribeChannel 2^64-1", method: methodOf(C, "describeChannel"), req: { channelId: MAX_U64 }, expect: IA, says: /channel_id/ },
      { name: "DescribeChannel another's group", method: methodOf(C, "describeChannel"), req: { channelId: bobsGroup }, expect: NF },
      { name: "ListChannels limit 2^32-1", method: methodOf(C, "listChannels"), req: { limit: 0xffffffff }, expect: ["ok"] },
      { name: "ListChannels garbage page token", method: methodOf(C, "listChannels"), req: { pageToken: "!!not a token!!" }, expect: IA, says: /page_token/ },
      { name: "ListChannels 100,001 page token", method: methodOf(C, "listChannels"), req: { pageToken: LONG }, expect: IA, says: /page_token/ },
      { name: "ListChannels NUL page token", method: methodOf(C, "listChannels"), req: { pageToken: "\u0000" }, expect: IA, says: /page_token/ },
      { name: "DescribeChannel -1 (JSON)", method: methodOf(C, "describeChannel"), req: {}, json: '{"channelId":"-1"}', expect: IA },
      { name: "DescribeChannel 1.5 (JSON)", method: methodOf(C, "describeChannel"), req: {}, json: '{"channelId":1.5}', expect: IA },
      { name: "DescribeChannel 2^64 (JSON)", method: methodOf(C, "describeChannel"), req: {}, json: '{"channelId":"18446744073709551616"}', expect: IA },
      { name: "DescribeChannel 1e400 (JSON)", method: methodOf(C, "describeChannel"), req: {}, json: '{"channelId":1e400}', expect: IA },
      { name: "ListChannels limit -1 (JSON)", method: methodOf(C, "listChannels"), req: {}, json: '{"limit":-1}', expect: IA },
      { name: "ListChannels limit 2^32 (JSON)", method: methodOf(C, "listChannels"), req: {}, json: '{"limit":4294967296}', expect: IA },
      { name: "ListChannels null limit, array token (JSON)", method: methodOf(C, "listChannels"), req: {}, json: '{"limit":null,"pageToken":["a"]}', expect: IA },
      { name: "SetMemberRole unknown name (JSON)", method: methodOf(C, "setMemberRole"), req: {}, json: '{"channelId":"CHANNEL","userId":"1","role":"MEMBER_ROLE_SUPERUSER"}', expect: IA },
      { name: "SetMemberRole 99 (JSON number)", method: methodOf(C, "setMemberRole"), req: {}, json: `{"channelId":"CHANNEL","userId":"${carol.userId}","role":99}`, expect: IA, says: /role/ },
      { name: "CreateGroup member ids as an object (JSON)", method: methodOf(C, "createGroup"), req: {}, json: '{"title":"t","memberUserIds":{"0":"1"}}', expect: IA },
      { name: "JSON body not an object", method: methodOf(C, "listChannels"), req: {}, json: "[]", expect: IA },
      { name: "JSON body of a deep nesting", method: methodOf(C, "listChannels"), req: {}, json: `${"[".repeat(100_000)}${"]".repeat(100_000)}`, expect: IA },
      { name: "ListMembers another's group", method: methodOf(C, "listMembers"), req: { channelId: bobsGroup }, expect: NF },
      { name: "ListMembers 2^64-1", method: methodOf(C, "listMembers"), req: { channelId: MAX_U64 }, expect: IA, says: /channel_id/ },
      { name: "AddMembers 200 ids", method: methodOf(C, "addMembers"), req: { channelId: alicesGroup, userIds: Array.from({ length: 200 }, (_, i) => (i === 0 ? bob.userId : NO_SUCH - BigInt(i))) }, expect: IA, says: /user_ids|100/ },
      { name: "AddMembers 0", method: methodOf(C, "addMembers"), req: { channelId: alicesGroup, userIds: [bob.userId, 0n] }, expect: IA, says: /user_ids/ },
      { name: "AddMembers none", method: methodOf(C, "addMembers"), req: { channelId: alicesGroup, userIds: [] }, expect: ["invalid_argument", "ok"] },
      { name: "AddMembers no such user beside a real one", method: methodOf(C, "addMembers"), req: { channelId: alicesGroup, userIds: [bob.userId, NO_SUCH] }, expect: ["not_found", "invalid_argument"] },
      { name: "AddMembers to another's group", method: methodOf(C, "addMembers"), req: { channelId: bobsGroup, userIds: [alice.userId] }, expect: NF },
      { name: "AddMembers to a direct chat", method: methodOf(C, "addMembers"), req: { channelId: direct, userIds: [bob.userId] }, expect: ["failed_precondition", "invalid_argument"] },
      { name: "RemoveMember 0", method: methodOf(C, "removeMember"), req: { channelId: alicesGroup, userId: 0n }, expect: IA, says: /user_id/ },
      // A retry of a removal that landed: a success that changes nothing.
      { name: "RemoveMember not a member", method: methodOf(C, "removeMember"), req: { channelId: alicesGroup, userId: NO_SUCH }, expect: ["ok"] },
      { name: "RemoveMember from another's group", method: methodOf(C, "removeMember"), req: { channelId: bobsGroup, userId: carol.userId }, expect: NF },
      { name: "SetMemberRole 99", method: methodOf(C, "setMemberRole"), req: { channelId: alicesGroup, userId: carol.userId, role: 99 }, expect: IA, says: /role/ },
      { name: "SetMemberRole unspecified", method: methodOf(C, "setMemberRole"), req: { channelId: alicesGroup, userId: carol.userId, role: 0 }, expect: IA, says: /role/ },
      { name: "SetMemberRole in another's group", method: methodOf(C, "setMemberRole"), req: { channelId: bobsGroup, userId: carol.userId, role: 2 }, expect: NF },
      { name: "UpdateGroup whitespace title", method: methodOf(C, "updateGroup"), req: { channelId: alicesGroup, title: "\u200b \u200b" }, expect: IA, says: /title/ },
      { name: "UpdateGroup 100,001 title", method: methodOf(C, "updateGroup"), req: { channelId: alicesGroup, title: LONG }, expect: IA, says: /title/ },
      { name: "UpdateGroup another's", method: methodOf(C, "updateGroup"), req: { channelId: bobsGroup, title: "mine" }, expect: NF },
      { name: "LeaveGroup 0", method: methodOf(C, "leaveGroup"), req: { channelId: 0n }, expect: IA, says: /channel_id/ },
      { name: "LeaveGroup another's", method: methodOf(C, "leaveGroup"), req: { channelId: bobsGroup }, expect: NF },
      { name: "MuteChannel far future", method: methodOf(C, "muteChannel"), req: { channelId: alicesGroup, mutedUntil: { seconds: 253402300799n } }, expect: ["ok", "invalid_argument"] },
      { name: "MuteChannel far past", method: methodOf(C, "muteChannel"), req: { channelId: alicesGroup, mutedUntil: { seconds: -62135596800n } }, expect: ["ok", "invalid_argument"] },
      { name: "MuteChannel past year 9999", method: methodOf(C, "muteChannel"), req: { channelId: alicesGroup, mutedUntil: { seconds: 1n << 62n } }, expect: IA, says: /muted_until/ },
      { name: "MuteChannel negative nanos", method: methodOf(C, "muteChannel"), req: { channelId: alicesGroup, mutedUntil: { seconds: 1n, nanos: -1 } }, expect: IA, says: /muted_until/ },
      { name: "MuteChannel nanos of 2e9", method: methodOf(C, "muteChannel"), req: { channelId: alicesGroup, mutedUntil: { seconds: 1n, nanos: 2_000_000_000 } }, expect: IA, says: /muted_until/ },
      { name: "MuteChannel another's", method: methodOf(C, "muteChannel"), req: { channelId: bobsGroup, mutedUntil: { seconds: 2000000000n } }, expect: NF },
      { name: "PinChannel 2^64-1", method: methodOf(C, "pinChannel"), req: { channelId: MAX_U64, pinned: true }, expect: IA, says: /channel_id/ },
      { name: "PinChannel another's", method: methodOf(C, "pinChannel"), req: { channelId: bobsGroup, pinned: true }, expect: NF },
      { name: "ArchiveChannel another's", method: methodOf(C, "archiveChannel"), req: { channelId: bobsGroup, archived: true }, expect: NF },
      { name: "ClearHistory through 2^64-1", method: methodOf(C, "clearHistory"), req: { channelId: alicesGroup, throughSeq: MAX_U64 }, expect: ["ok", "invalid_argument"] },
      { name: "ClearHistory another's", method: methodOf(C, "clearHistory"), req: { channelId: bobsGroup, throughSeq: 1n }, expect: NF },
      { name: "MarkUnread another's", method: methodOf(C, "markUnread"), req: { channelId: bobsGroup, unread: true }, expect: NF },
      { name: "GetInviteLink another's", method: methodOf(C, "getInviteLink"), req: { channelId: bobsGroup }, expect: NF },
      { name: "GetInviteLink of a direct chat", method: methodOf(C, "getInviteLink"), req: { channelId: direct }, expect: ["failed_precondition", "invalid_argument"] },
      { name: "RevokeInviteLink another's", method: methodOf(C, "revokeInviteLink"), req: { channelId: bobsGroup }, expect: NF },
      { name: "GetInviteLink as a plain member", method: methodOf(C, "getInviteLink"), req: { channelId: alicesGroup }, expect: ["permission_denied"], as: "carol" },
      { name: "AddMembers as a plain member", method: methodOf(C, "addMembers"), req: { channelId: alicesGroup, userIds: [bob.userId] }, expect: ["permission_denied"], as: "carol" },
      { name: "RemoveMember the owner as a plain member", method: methodOf(C, "removeMember"), req: { channelId: alicesGroup, userId: alice.userId }, expect: ["permission_denied"], as: "carol" },
      { name: "SetMemberRole self to owner as a plain member", method: methodOf(C, "setMemberRole"), req: { channelId: alicesGroup, userId: carol.userId, role: 3 }, expect: ["permission_denied", "invalid_argument"], as: "carol" },
      { name: "UpdateGroup as a plain member", method: methodOf(C, "updateGroup"), req: { channelId: alicesGroup, title: "carol's now" }, expect: ["permission_denied"], as: "carol" },
      { name: "UpdateGroup of a direct chat", method: methodOf(C, "updateGroup"), req: { channelId: direct, title: "x" }, expect: ["failed_precondition", "invalid_argument"] },
      { name: "LeaveGroup of a direct chat", method: methodOf(C, "leaveGroup"), req: { channelId: direct }, expect: ["failed_precondition", "invalid_argument"] },
      { name: "SetMemberRole in a direct chat", method: methodOf(C, "setMemberRole"), req: { channelId: direct, userId: carol.userId, role: 2 }, expect: ["failed_precondition", "invalid_argument"] },
      { name: "DescribeInvite empty", method: methodOf(C, "describeInvite"), req: { code: "" }, expect: IA, says: /code/ },
      { name: "DescribeInvite 100,001", method: methodOf(C, "describeInvite"), req: { code: LONG }, expect: IA, says: /code/ },
      { name: "DescribeInvite well-shaped, none", method: methodOf(C, "describeInvite"), req: { code: "A".repeat(22) }, expect: ["not_found"] },
      { name: "JoinByInvite NUL", method: methodOf(C, "joinByInvite"), req: { code: "\u0000".repeat(22) }, expect: IA, says: /code/ },
      // MessageService
      { name: "ListMessages 0", method: methodOf(M, "listMessages"), req: { channelId: 0n }, expect: IA, says: /channel_id/ },
      { name: "ListMessages another's", method: methodOf(M, "listMessages"), req: { channelId: bobsGroup }, expect: NF },
      { name: "ListMessages direction 99, limit 2^32-1, anchor 2^64-1", method: methodOf(M, "listMessages"), req: { channelId: alicesGroup, direction: 99, limit: 0xffffffff, anchorSeq: MAX_U64 }, expect: IA, says: /direction/ },
      { name: "ListMessages anchor 2^64-1 forward", method: methodOf(M, "listMessages"), req: { channelId: alicesGroup, direction: 2, anchorSeq: MAX_U64 }, expect: ["ok"] },
      { name: "SendMessage empty", method: methodOf(M, "sendMessage"), req: {}, expect: IA },
      { name: "SendMessage whitespace text", method: methodOf(M, "sendMessage"), req: { clientMsgId: "w1", channelId: alicesGroup, text: " \n\t " }, expect: IA, says: /text/ },
      // Its bytes are taken from the text budget before the text is looked at, as on the realtime path:
      // the third of these (1.2 MB) is past the 1 MiB burst.
      { name: "SendMessage 100,000 code points", method: methodOf(M, "sendMessage"), req: { clientMsgId: "w2", channelId: alicesGroup, text: "😀".repeat(100_000) }, expect: ["invalid_argument", "resource_exhausted"], says: /text/ },
      { name: "SendMessage 100,001 client_msg_id", method: methodOf(M, "sendMessage"), req: { clientMsgId: LONG, channelId: alicesGroup, text: "hi" }, expect: IA, says: /client_msg_id/ },
      { name: "SendMessage NUL client_msg_id", method: methodOf(M, "sendMessage"), req: { clientMsgId: "\u0000", channelId: alicesGroup, text: "hi" }, expect: ["invalid_argument", "ok"] },
      { name: "SendMessage to another's group", method: methodOf(M, "sendMessage"), req: { clientMsgId: "w3", channelId: bobsGroup, text: "hi" }, expect: NF },
      { name: "SendMessage edit and delete at once", method: methodOf(M, "sendMessage"), req: { clientMsgId: "w4", channelId: alicesGroup, text: "hi", editSeq: 1n, deleteSeq: 1n }, expect: IA },
      { name: "SendMessage edit 2^64-1", method: methodOf(M, "sendMessage"), req: { clientMsgId: "w5", channelId: alicesGroup, text: "hi", editSeq: MAX_U64 }, expect: ["invalid_argument", "not_found"] },
      { name: "SendMessage reply to 2^64-1", method: methodOf(M, "sendMessage"), req: { clientMsgId: "w6", channelId: alicesGroup, text: "hi", replyToSeq: MAX_U64 }, expect: ["invalid_argument", "not_found"] },
      { name: "SendMessage react to 2^64-1", method: methodOf(M, "sendMessage"), req: { clientMsgId: "w7", channelId: alicesGroup, text: "👍", reactSeq: MAX_U64 }, expect: ["invalid_argument", "not_found"] },
      { name: "SendMessage an edit of another's message", method: methodOf(M, "sendMessage"), req: { clientMsgId: "w9", channelId: alicesGroup, text: "mine now", editSeq: carolsSeq }, expect: ["permission_denied"] },
      { name: "SendMessage reaction of 1,000 characters", method: methodOf(M, "sendMessage"), req: { clientMsgId: "w10", channelId: alicesGroup, text: "👍".repeat(1_000), reactSeq: carolsSeq }, expect: IA },
      { name: "SendMessage reaction of a word", method: methodOf(M, "sendMessage"), req: { clientMsgId: "w11", channelId: alicesGroup, text: "yes", reactSeq: carolsSeq }, expect: IA },
      { name: "SendMessage the server's own key", method: methodOf(M, "sendMessage"), req: { clientMsgId: "note:1", channelId: alicesGroup, text: "hi" }, expect: IA, says: /client_msg_id/ },
      { name: "SendMessage lone surrogate", method: methodOf(M, "sendMessage"), req: {}, json: `{"clientMsgId":"w8","channelId":"${"CHANNEL"}","text":"\\ud83d"}`, expect: IA },
      { name: "SyncInbox after 2^64-1, limit 2^32-1", method: methodOf(M, "syncInbox"), req: { afterInboxSeq: MAX_U64, limit: 0xffffffff }, expect: ["ok", "invalid_argument"] },
      { name: "MarkRead 2^64-1", method: methodOf(M, "markRead"), req: { channelId: alicesGroup, seq: MAX_U64 }, expect: ["ok", "invalid_argument"] },
      { name: "MarkRead another's", method: methodOf(M, "markRead"), req: { channelId: bobsGroup, seq: 1n }, expect: NF },
      { name: "SearchMessages another's", method: methodOf(M, "searchMessages"), req: { channelId: bobsGroup, query: "secret" }, expect: NF },
      { name: "SearchMessages 100,001 query", method: methodOf(M, "searchMessages"), req: { channelId: alicesGroup, query: LONG }, expect: IA, says: /query/ },
      { name: "SearchMessages empty query", method: methodOf(M, "searchMessages"), req: { channelId: alicesGroup, query: "   " }, expect: IA, says: /query/ },
      { name: "SearchMessages query syntax", method: methodOf(M, "searchMessages"), req: { channelId: alicesGroup, query: '"( * NEAR( OR % _ \\ \'' }, expect: ["ok", "invalid_argument"] },
      { name: "SearchMessages lone surrogate", method: methodOf(M, "searchMessages"), req: {}, json: '{"channelId":"CHANNEL","query":"\\ud800"}', expect: IA },
      { name: "SearchMessages NUL, before 2^64-1, limit 2^32-1", method: methodOf(M, "searchMessages"), req: { channelId: alicesGroup, query: "\u0000", beforeSeq: MAX_U64, limit: 0xffffffff }, expect: ["ok", "invalid_argument"] },
      // PresenceService
      { name: "GetPresence 10,000 ids", method: methodOf(P, "getPresence"), req: { userIds: Array.from({ length: 10_000 }, (_, i) => BigInt(i + 1)) }, expect: ["invalid_argument", "resource_exhausted"], says: /user_ids/ },
      { name: "GetPresence 0", method: methodOf(P, "getPresence"), req: { userIds: [0n] }, expect: IA, says: /user_ids/ },
      { name: "GetPresence 2^64-1", method: methodOf(P, "getPresence"), req: { userIds: [MAX_U64] }, expect: IA, says: /user_ids/ },
      { name: "GetPresence the same id 10,000 times", method: methodOf(P, "getPresence"), req: { userIds: Array.from({ length: 10_000 }, () => bob.userId) }, expect: ["invalid_argument", "resource_exhausted", "ok"] },
      { name: "UpdatePresenceSettings none", method: methodOf(P, "updatePresenceSettings"), req: {}, expect: ["invalid_argument", "ok"] },
      { name: "UpdatePresenceSettings visibility 99", method: methodOf(P, "updatePresenceSettings"), req: { settings: { visibility: 99 } }, expect: IA, says: /visibility/ },
      // PushService
      { name: "RegisterPushEndpoint none", method: methodOf(Pu, "registerPushEndpoint"), req: {}, expect: IA },
      { name: "RegisterPushEndpoint web push empty", method: methodOf(Pu, "registerPushEndpoint"), req: { endpoint: { case: "webPush", value: {} } }, expect: IA },
      { name: "RegisterPushEndpoint web push 100,001 endpoint", method: methodOf(Pu, "registerPushEndpoint"), req: { endpoint: { case: "webPush", value: { endpoint: LONG, p256dh: "a", auth: "b" } } }, expect: IA },
      { name: "RegisterPushEndpoint web push to localhost", method: methodOf(Pu, "registerPushEndpoint"), req: { endpoint: { case: "webPush", value: { endpoint: "http://127.0.0.1:1/x", p256dh: "a", auth: "b" } } }, expect: IA },
      { name: "RegisterPushEndpoint apns NUL token", method: methodOf(Pu, "registerPushEndpoint"), req: { endpoint: { case: "apns", value: { deviceToken: "\u0000", topic: "\u0000" } } }, expect: IA },
      { name: "RegisterPushEndpoint fcm 100,001 token", method: methodOf(Pu, "registerPushEndpoint"), req: { endpoint: { case: "fcm", value: { registrationToken: LONG } } }, expect: IA },
      { name: "UpdatePushSettings unknown field", method: methodOf(Pu, "updatePushSettings"), req: {}, json: '{"settings":{"muted":true,"volume":11}}', expect: IA },
      // Tokens that are none
      { name: "GetMe without a token", method: methodOf(U, "getMe"), req: {}, expect: ["unauthenticated"], as: "nobody" },
      { name: "GetMe empty bearer", method: methodOf(U, "getMe"), req: {}, expect: ["unauthenticated"], token: "" },
      { name: "GetMe three dots", method: methodOf(U, "getMe"), req: {}, expect: ["unauthenticated"], token: "a.b.c" },
      { name: "GetMe 100,001 token", method: methodOf(U, "getMe"), req: {}, expect: ["http 431"], token: "e".repeat(100_001), noGrpc: true },
      { name: "GetMe 8,000 token", method: methodOf(U, "getMe"), req: {}, expect: ["unauthenticated"], token: "e.".repeat(4_000) },
      { name: "GetMe refresh token as access token", method: methodOf(U, "getMe"), req: {}, expect: ["unauthenticated"], token: alice.devices[0]!.refreshToken },
      { name: "GetMe alg none", method: methodOf(U, "getMe"), req: {}, expect: ["unauthenticated"], token: `${Buffer.from('{"alg":"none","typ":"JWT"}').toString("base64url")}.${alice.devices[0]!.token.split(".")[1]}.` },
      { name: "GetMe signature of another", method: methodOf(U, "getMe"), req: {}, expect: ["unauthenticated"], token: `${alice.devices[0]!.token.split(".").slice(0, 2).join(".")}.${bob.devices[0]!.token.split(".")[2]}` },
    ];
  };

  it("refuses each with a clear code, over Connect's binary and JSON and over gRPC", async () => {
    const url = suite.target.httpUrl;
    const grpc = createGrpcTransport({ baseUrl: suite.target.grpcUrl });
    const grpcCall = async (method: DescMethod, body: Uint8Array, token: string | undefined): Promise<Answer> => {
      const client = createClient(method.parent, grpc) as unknown as Record<string, (req: unknown, options: object) => Promise<unknown>>;
      const headers: Record<string, string> = token === undefined ? {} : { authorization: `Bearer ${token}` };
      try {
        await client[method.localName]!(fromBinary(method.input, body), { headers, timeoutMs: 15_000 });
        return { code: "ok", message: "" };
      } catch (e) {
        const err = ConnectError.from(e);
        return { code: GrpcCode[err.code].replace(/[A-Z]/g, (m, i: number) => (i > 0 ? "_" : "") + m.toLowerCase()), message: err.rawMessage };
      }
    };
    const failures: string[] = [];
    for (const c of cases()) {
      const token = c.token ?? (c.as === "nobody" ? undefined : (c.as === "carol" ? carol : alice).devices[0]!.token);
      const schema = c.method.input as DescMessage;
      const legs: [string, Uint8Array | string][] = [];
      if (c.json !== undefined) {
        legs.push(["json", c.json.replace("CHANNEL", String(alicesGroup))]);
      } else {
        const msg = create(schema, c.req as MessageInitShape<typeof schema>);
        legs.push(["binary", toBinary(schema, msg)]);
        let json: string | undefined;
        try {
          json = JSON.stringify(toJson(schema, msg));
        } catch {
          // A value JSON cannot carry (nanos out of range): binary only.
        }
        if (json !== undefined) legs.push(["json", json]);
        if (!c.noGrpc) legs.push(["grpc", toBinary(schema, msg)]);
      }
      for (const [leg, body] of legs) {
        let answer: Answer;
        try {
          answer = leg === "grpc" ? await grpcCall(c.method, body as Uint8Array, token) : await call(url, c.method, body, token);
        } catch (e) {
          failures.push(`${c.name} (${leg}): ${String(e)}`);
          continue;
        }
        const bad = !c.expect.includes(answer.code as Code) || (c.says !== undefined && answer.code !== "ok" && !c.says.test(answer.message)) || (answer.code !== "ok" && answer.message === "");
        if (bad) failures.push(`${c.name} (${leg}): ${answer.code} ${JSON.stringify(answer.message.slice(0, 200))}, expected ${c.expect.join("|")}${c.says ? ` saying ${c.says}` : ""}`);
      }
    }
    assert.deepEqual(failures, []);

    // Nothing refused was applied in part, and nothing of bob's group was changed or shown.
    const members = (await alice.api.channels.listMembers({ channelId: alicesGroup })).members.map((m) => m.userId);
    assert.deepEqual(new Set(members), new Set([alice.userId, carol.userId]));
    const bobs = await bob.api.channels.describeChannel({ channelId: bobsGroup });
    assert.equal(bobs.channel!.title, "bob's");
    assert.equal(bobs.channel!.memberCount, 2);
    const history = await waitFor(async () => {
      const page = await bob.api.messages.listMessages({ channelId: bobsGroup });
      return page.messages.length > 0 && page;
    }, "bob's message to be stored");
    assert.deepEqual(history.messages.map((m) => m.text), ["bob's secret"]);
    assert.equal((await alice.api.channels.listChannels({})).channels.filter((c) => c.title === "t").length, 3, "one group of two for each leg of the 10,000 duplicates");

    // A history cleared and a read mark moved "through 2^64-1" stopped at the newest message: what comes next is shown, and unread.
    await carol.api.messages.sendMessage({ clientMsgId: "after", channelId: alicesGroup, text: "after the clear" });
    // On the cluster a send is acked once queued, and stored a moment later by the pipeline.
    const after = await waitFor(async () => {
      const page = await alice.api.messages.listMessages({ channelId: alicesGroup });
      return page.messages.some((m) => m.text === "after the clear") && page;
    }, "carol's message after the clear to be shown to alice");
    // ("hi" is the send under the client_msg_id "\u0000", taken once over the three legs.)
    assert.deepEqual(after.messages.map((m) => m.text).filter((t) => t !== ""), ["after the clear", "hi"], "newest first");
    assert.equal((await alice.api.channels.describeChannel({ channelId: alicesGroup })).channel!.unreadCount, 1n);
  });

  it("refuses a request body past the limit, as sent or once inflated, with RESOURCE_EXHAUSTED", async () => {
    const url = `${suite.target.httpUrl}/chat.v1.UserService/UpdateProfile`;
    const headers = { "content-type": "application/json", authorization: `Bearer ${alice.devices[0]!.token}` };
    // 64 MiB of spaces, 64 KiB once gzipped: the limit is the inflated size's, not the wire's.
    const huge = `{"displayName":"a"${" ".repeat(64 * 1024 * 1024)}}`;
    for (const [name, body, extra] of [
      ["as sent", huge, {}],
      ["inflated", gzipSync(huge), { "content-encoding": "gzip" }],
    ] as const) {
      const res = await fetch(url, { method: "POST", headers: { ...headers, ...extra }, body, signal: AbortSignal.timeout(30_000) });
      const err = (await res.json().catch(() => ({ code: `http ${res.status}` }))) as { code?: string; message?: string };
      assert.equal(err.code, "resource_exhausted", `${name}: ${res.status} ${JSON.stringify(err)}`);
    }
    // The server is still answering, and alice's name is as it was.
    assert.equal((await alice.api.users.getMe({})).user!.displayName, alice.username);
  });
});
}
