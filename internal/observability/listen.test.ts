import assert from "node:assert/strict";
import { once } from "node:events";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { Server as GrpcServer } from "@grpc/grpc-js";
import { bindGrpc, listen, ListenError } from "./listen.js";

describe("listen", () => {
  it("rejects a port in use with an error naming the setting, instead of an 'error' event nobody handles", async () => {
    const first = http.createServer();
    first.listen(0, "127.0.0.1");
    await once(first, "listening");
    const port = (first.address() as AddressInfo).port;
    const second = http.createServer();
    try {
      await assert.rejects(listen(second, "127.0.0.1", port, "CHAT_HTTP_PORT"), (err: unknown) => {
        assert.ok(err instanceof ListenError);
        assert.match(err.message, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port} \\(CHAT_HTTP_PORT\\): the port is in use`));
        return true;
      });
      assert.equal(second.listenerCount("error"), 0, "no listener left behind");
    } finally {
      first.close();
    }
  });

  it("names CHAT_HOST, not the port's setting, for a host that does not resolve", async () => {
    const server = http.createServer();
    await assert.rejects(listen(server, "999.1.1.1", 0, "CHAT_HTTP_PORT"), (err: unknown) => {
      assert.ok(err instanceof ListenError);
      assert.match(err.message, /^cannot listen on 999\.1\.1\.1:0 \(CHAT_HOST\): the host name does not resolve; set CHAT_HOST/);
      return true;
    });
  });

  it("resolves once listening", async () => {
    const server = http.createServer();
    await listen(server, "127.0.0.1", 0, "CHAT_OPS_PORT");
    assert.ok((server.address() as AddressInfo).port > 0);
    await new Promise((r) => server.close(r));
  });

  it("binds a grpc-js server as listen does: a port in use or a host that does not resolve named by its setting", async () => {
    const first = http.createServer();
    await listen(first, "127.0.0.1", 0, "CHAT_HTTP_PORT");
    const port = (first.address() as AddressInfo).port;
    const grpc = new GrpcServer();
    try {
      await assert.rejects(bindGrpc(grpc, "127.0.0.1", port, "CHAT_GRPC_PORT"), (err: unknown) => {
        assert.ok(err instanceof ListenError);
        assert.match(err.message, new RegExp(`^cannot listen on 127\\.0\\.0\\.1:${port} \\(CHAT_GRPC_PORT\\): the port is in use`));
        return true;
      });
      await assert.rejects(bindGrpc(grpc, "no-such-host.invalid", 0, "CHAT_GRPC_PORT"), (err: unknown) => {
        assert.ok(err instanceof ListenError);
        assert.match(err.message, /\(CHAT_HOST\): the host name does not resolve/);
        return true;
      });
      assert.ok((await bindGrpc(grpc, "127.0.0.1", 0, "CHAT_GRPC_PORT")) > 0);
    } finally {
      grpc.forceShutdown();
      first.close();
    }
  });
});
