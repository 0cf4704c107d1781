import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { create } from "@bufbuild/protobuf";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { GetUsersResponseSchema, UserService } from "../../gen/es/chat/v1/users_pb.js";
import { PUBLIC_API_JSON_OPTIONS } from "./router.js";

describe("api: JSON requests' 64-bit integers (PUBLIC_API_JSON_OPTIONS)", () => {
  it("reads one written as a JSON number past 2^53 (curl by hand, Go's encoding/json) exactly, not rounded to another id", async () => {
    let asked: bigint[] = [];
    const server = http.createServer(
      connectNodeAdapter({
        jsonOptions: PUBLIC_API_JSON_OPTIONS,
        routes: (r) =>
          void r.service(UserService, {
            getUsers(req) {
              asked = req.userIds;
              return create(GetUsersResponseSchema);
            },
          }),
      }),
    );
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    try {
      const res = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/chat.v1.UserService/GetUsers`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: '{"userIds":[122799081264250881,"122799081264250883",7]}',
      });
      assert.equal(res.status, 200);
      assert.deepEqual(asked, [122799081264250881n, 122799081264250883n, 7n]);
    } finally {
      await new Promise((r) => server.close(r));
    }
  });
});
