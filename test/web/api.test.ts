import { strict as assert } from "node:assert";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Code, ConnectError } from "@connectrpc/connect";
import { createApi, describeError } from "../../web/src/api.js";
import { waitFor } from "../support/wait.js";

describe("web: describeError", () => {
  it("says the fields the server's message names as words, not as the API spells them", () => {
    assert.equal(describeError(new ConnectError("display_name must be 1 to 64 characters", Code.InvalidArgument)), "display name must be 1 to 64 characters");
    assert.equal(describeError(new ConnectError("current_password is wrong", Code.PermissionDenied)), "current password is wrong");
    assert.equal(describeError(new ConnectError("wrong username or password", Code.Unauthenticated)), "wrong username or password");
  });
});

describe("web: calls whose token expired in flight", () => {
  /** A call the server holds until the test answers it: refused with TOKEN_EXPIRED, or taken. */
  interface Held {
    token: string;
    answer(expired: boolean): void;
  }
  const held: Held[] = [];
  let server: Server;
  let baseUrl: string;

  before(async () => {
    server = createServer((req, res) => {
      req.resume();
      req.on("end", () =>
        held.push({
          token: (req.headers.authorization ?? "").replace(/^Bearer /, ""),
          answer: (expired) => {
            if (!expired) return void res.writeHead(200, { "content-type": "application/json" }).end("{}");
            res.writeHead(401, { "content-type": "application/json", "chat-error-code": "ERROR_CODE_TOKEN_EXPIRED" });
            res.end(JSON.stringify({ code: "unauthenticated", message: "access token expired" }));
          },
        }),
      );
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  it("refreshes once for two calls refused with the same token: the one refused after the refresh goes again with the new token", async () => {
    held.length = 0;
    let refreshes = 0;
    const auth = {
      current: { accessToken: "t0" },
      accessToken: async () => auth.current.accessToken,
      refresh: async () => (auth.current = { accessToken: `t${++refreshes}` }),
    };
    const api = createApi(auth as never, baseUrl);
    const first = api.users.getMe({});
    const second = api.users.getMe({});
    await waitFor(() => held.length === 2, "both calls sent");
    assert.deepEqual(held.map((h) => h.token), ["t0", "t0"]);

    held[0]!.answer(true);
    await waitFor(() => held.length === 3, "the first call sent again");
    assert.equal(held[2]!.token, "t1");
    held[2]!.answer(false);
    await first;

    // Refused with t0 too, but t0 was refreshed meanwhile: each refresh is one more chance of two tabs spending the same refresh token.
    held[1]!.answer(true);
    await waitFor(() => held.length === 4, "the second call sent again");
    assert.equal(held[3]!.token, "t1");
    held[3]!.answer(false);
    await second;
    assert.equal(refreshes, 1, "refreshes");
  });
});
