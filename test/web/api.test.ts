import { strict as assert } from "node:assert";
import { Code, ConnectError } from "@connectrpc/connect";
import { describeError } from "../../web/src/api.js";

describe("web: describeError", () => {
  it("says the fields the server's message names as words, not as the API spells them", () => {
    assert.equal(describeError(new ConnectError("display_name must be 1 to 64 characters", Code.InvalidArgument)), "display name must be 1 to 64 characters");
    assert.equal(describeError(new ConnectError("current_password is wrong", Code.PermissionDenied)), "current password is wrong");
    assert.equal(describeError(new ConnectError("wrong username or password", Code.Unauthenticated)), "wrong username or password");
  });
});
